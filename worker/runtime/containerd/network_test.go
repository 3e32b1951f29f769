package containerd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// fakeNetwork is worker/network as the runtime sees it: a real, empty
// network namespace per task and its hosts and resolv.conf files.
type fakeNetwork struct {
	dir string

	mu       sync.Mutex
	attached map[string]string // task ID → netns name
	detached []string
}

func (n *fakeNetwork) Attach(_ context.Context, t *shoalpb.Task) (runtime.Attachment, error) {
	name := "shoal-ctrd-test-" + t.Id
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return runtime.Attachment{}, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	hosts := filepath.Join(n.dir, t.Id+".hosts")
	resolv := filepath.Join(n.dir, t.Id+".resolv")
	if err := os.WriteFile(hosts, []byte("10.200.0.5 "+t.Id+"\n"), 0o644); err != nil {
		return runtime.Attachment{}, err
	}
	if err := os.WriteFile(resolv, []byte("nameserver 10.200.0.1\n"), 0o644); err != nil {
		return runtime.Attachment{}, err
	}
	n.mu.Lock()
	n.attached[t.Id] = name
	n.mu.Unlock()
	return runtime.Attachment{NetNSPath: "/var/run/netns/" + name, IP: "10.200.0.5", HostsPath: hosts, ResolvConfPath: resolv}, nil
}

func (n *fakeNetwork) Detach(_ context.Context, taskID string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.detached = append(n.detached, taskID)
	if name, ok := n.attached[taskID]; ok {
		delete(n.attached, taskID)
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns delete: %v: %s", err, out)
		}
	}
	return nil
}

func TestNetworkAttachment(t *testing.T) {
	testutil.RequireRoot(t, "ip")
	net := &fakeNetwork{dir: t.TempDir(), attached: map[string]string{}}
	t.Cleanup(func() {
		for id := range net.attached {
			_ = net.Detach(context.Background(), id)
		}
	})
	r := newRuntime(t, Config{Network: net})
	loadApp(t, r)

	h := start(t, r, newTask("netted", "netns"))
	if ip := h.Info().IP; ip != "10.200.0.5" {
		t.Errorf("Info().IP = %q, want the attachment's", ip)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/var/run/netns/shoal-ctrd-test-netted", &st); err != nil {
		t.Fatalf("netns: %v", err)
	}
	wantNS := fmt.Sprintf("stdout: netns=net:[%d]", st.Ino)
	if s := wait(t, h); !s.Success() {
		t.Fatalf("exit status %+v", s)
	}
	if lines := logLines(t, r, "netted"); !slices.Contains(lines, wantNS) {
		t.Errorf("the task ran in %q, want %q", lines, wantNS)
	}
	// Detached before Wait returned.
	net.mu.Lock()
	detached := slices.Contains(net.detached, "netted")
	net.mu.Unlock()
	if !detached {
		t.Errorf("Wait returned before the task was detached")
	}

	hosts := newTask("hosts", "cat", "/etc/hosts")
	if s := wait(t, start(t, r, hosts)); !s.Success() {
		t.Fatalf("exit status %+v", s)
	}
	if lines := logLines(t, r, "hosts"); !slices.Contains(lines, "stdout: 10.200.0.5 hosts") {
		t.Errorf("/etc/hosts in the task = %q", lines)
	}
}
