package runtime

import (
	"context"
	"io"

	shoalpb "shoal/proto"
)

// Network gives container tasks their own network namespace on the node's
// bridge (worker/network implements it). The containerd runtime attaches a
// task before creating its container and detaches it once the task is
// removed; the process runtime runs tasks in the host's network.
type Network interface {
	// Attach makes the task's namespace with the address the allocator gave
	// it (t.Address), its routes, outbound NAT and host-mode published
	// ports, and writes its /etc/hosts and /etc/resolv.conf. It is
	// idempotent: attaching an attached task returns the same Attachment.
	Attach(ctx context.Context, t *shoalpb.Task) (Attachment, error)
	// Detach removes everything Attach made for the task. Detaching an
	// unknown task is not an error.
	Detach(ctx context.Context, taskID string) error
}

// Attachment is what a runtime needs to put a task into its network.
type Attachment struct {
	// NetNSPath is the namespace to join ("/var/run/netns/shoal-…").
	NetNSPath string
	// IP is the task's address without prefix length ("10.200.3.5").
	IP string
	// HostsPath and ResolvConfPath are files to bind-mount on the task's
	// /etc/hosts and /etc/resolv.conf.
	HostsPath      string
	ResolvConfPath string
}

// ImageSource fetches an image this node lacks from the rest of the cluster
// as a tar the runtime can import (OCI layout or docker-archive). It returns
// an error wrapping ErrImageNotFound when no node has the image.
type ImageSource func(ctx context.Context, name string) (io.ReadCloser, error)

// Execer is implemented by Handles that can run a command inside the task,
// as exec health checks need. output is the command's combined output,
// truncated to a few KiB.
type Execer interface {
	Exec(ctx context.Context, argv []string) (code int, output []byte, err error)
}
