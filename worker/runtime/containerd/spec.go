package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// cgroupParent is the cgroup under which every task's cgroup is made.
const cgroupParent = "shoal"

// labelIP records the task's address on its container, for Info after Adopt.
const labelIP = "shoal.ip"

// cfsPeriod is the CFS period CPU limits are expressed in (100 ms).
const cfsPeriod = 100000

// imageConfig is the part of an image's config blob shoal reads: the OCI
// fields plus Docker's Healthcheck, which the OCI types lack.
type imageConfig struct {
	Config struct {
		User        string            `json:"User"`
		Env         []string          `json:"Env"`
		Entrypoint  []string          `json:"Entrypoint"`
		Cmd         []string          `json:"Cmd"`
		WorkingDir  string            `json:"WorkingDir"`
		Labels      map[string]string `json:"Labels"`
		StopSignal  string            `json:"StopSignal"`
		Healthcheck *struct {
			Test        []string      `json:"Test"`
			Interval    time.Duration `json:"Interval"`
			Timeout     time.Duration `json:"Timeout"`
			StartPeriod time.Duration `json:"StartPeriod"`
			Retries     int           `json:"Retries"`
		} `json:"Healthcheck"`
	} `json:"config"`
}

// readImageConfig reads the raw config blob of img.
func readImageConfig(ctx context.Context, img client.Image) (*imageConfig, error) {
	desc, err := img.Config(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: read its config: %w", img.Name(), err)
	}
	b, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return nil, fmt.Errorf("image %s: read its config: %w", img.Name(), err)
	}
	var ic imageConfig
	if err := json.Unmarshal(b, &ic); err != nil {
		return nil, fmt.Errorf("image %s: its config is not valid JSON: %w", img.Name(), err)
	}
	return &ic, nil
}

// healthcheck is the image's HEALTHCHECK, nil if it has none.
func (ic *imageConfig) healthcheck() *shoalpb.HealthCheck {
	hc := ic.Config.Healthcheck
	if hc == nil || len(hc.Test) == 0 {
		return nil
	}
	return &shoalpb.HealthCheck{
		Test:          hc.Test,
		IntervalMs:    hc.Interval.Milliseconds(),
		TimeoutMs:     hc.Timeout.Milliseconds(),
		StartPeriodMs: hc.StartPeriod.Milliseconds(),
		Retries:       uint32(max(hc.Retries, 0)),
	}
}

func (r *Runtime) runcOptions() *runcoptions.Options {
	return &runcoptions.Options{Root: r.p.runc()}
}

// checkSpec validates what can be checked without the image. Its errors
// wrap runtime.ErrInvalidSpec and name the field to fix.
func (r *Runtime) checkSpec(t *shoalpb.Task) error {
	c := t.GetSpec().GetContainer()
	if c.GetImage() == "" {
		return fmt.Errorf("%w: container.image is empty; name the image to run", runtime.ErrInvalidSpec)
	}
	if _, err := normalize(c.GetImage()); err != nil {
		return err
	}
	if _, err := runtime.ParseSignal(c.GetStopSignal()); err != nil {
		return fmt.Errorf("container.stop_signal: %w", err)
	}
	for _, kv := range c.GetEnv() {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("%w: container.env entry %q is not KEY=VALUE", runtime.ErrInvalidSpec, kv)
		}
	}
	if wd := c.GetWorkdir(); wd != "" && !filepath.IsAbs(wd) {
		return fmt.Errorf("%w: container.workdir %q is not an absolute path", runtime.ErrInvalidSpec, wd)
	}
	_, err := r.mounts(c.GetMounts())
	return err
}

// mounts turns the task's mounts into OCI mounts.
func (r *Runtime) mounts(ms []*shoalpb.Mount) ([]specs.Mount, error) {
	var out []specs.Mount
	for _, m := range ms {
		if !filepath.IsAbs(m.GetTarget()) {
			return nil, fmt.Errorf("%w: mount target %q is not an absolute path", runtime.ErrInvalidSpec, m.GetTarget())
		}
		mode := "rw"
		if m.GetReadOnly() {
			mode = "ro"
		}
		switch m.GetType() {
		case shoalpb.MountType_MOUNT_TYPE_BIND:
			if !filepath.IsAbs(m.GetSource()) {
				return nil, fmt.Errorf("%w: bind mount source %q is not an absolute path", runtime.ErrInvalidSpec, m.GetSource())
			}
			if _, err := os.Stat(m.GetSource()); err != nil {
				return nil, fmt.Errorf("%w: mount source %s does not exist on this node; create it or constrain the service to nodes that have it", runtime.ErrInvalidSpec, m.GetSource())
			}
			out = append(out, specs.Mount{Type: "bind", Source: m.GetSource(), Destination: m.GetTarget(), Options: []string{"rbind", mode}})
		case shoalpb.MountType_MOUNT_TYPE_VOLUME:
			if r.cfg.Volume == nil {
				return nil, fmt.Errorf("%w: volume mount %q: this node has no named volumes", runtime.ErrInvalidSpec, m.GetSource())
			}
			if m.GetSource() == "" || strings.ContainsAny(m.GetSource(), "/\x00") {
				return nil, fmt.Errorf("%w: volume name %q must be non-empty and contain no '/'", runtime.ErrInvalidSpec, m.GetSource())
			}
			host, err := r.cfg.Volume(m.GetSource())
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", m.GetSource(), err)
			}
			out = append(out, specs.Mount{Type: "bind", Source: host, Destination: m.GetTarget(), Options: []string{"rbind", mode}})
		case shoalpb.MountType_MOUNT_TYPE_TMPFS:
			out = append(out, specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.GetTarget(), Options: []string{"nosuid", "nodev", "mode=1777", mode}})
		default:
			return nil, fmt.Errorf("%w: mount type %v is unknown; use bind, volume or tmpfs", runtime.ErrInvalidSpec, m.GetType())
		}
	}
	return out, nil
}

// containerSpec is how a task becomes a container.
type containerSpec struct {
	opts       []oci.SpecOpts
	labels     map[string]string
	stopSignal string
	user       string // as resolved inside the container, for errors
}

// containerSpec merges the task's container spec over the image's config:
// command replaces the entrypoint and args follow it; args alone replace
// the image's cmd; env merges by key with the task's winning.
func (r *Runtime) containerSpec(t *shoalpb.Task, ic *imageConfig, att *runtime.Attachment) (containerSpec, error) {
	c := t.GetSpec().GetContainer()
	entrypoint, cmd := ic.Config.Entrypoint, ic.Config.Cmd
	if len(c.GetCommand()) > 0 {
		entrypoint, cmd = c.GetCommand(), c.GetArgs()
	} else if len(c.GetArgs()) > 0 {
		cmd = c.GetArgs()
	}
	argv := append(append([]string{}, entrypoint...), cmd...)
	if len(argv) == 0 || argv[0] == "" {
		return containerSpec{}, fmt.Errorf("%w: image %s has no ENTRYPOINT or CMD and container.command is empty; set a command", runtime.ErrInvalidSpec, c.GetImage())
	}
	env := mergeEnv(ic.Config.Env, c.GetEnv())
	workdir := c.GetWorkdir()
	if workdir == "" {
		workdir = ic.Config.WorkingDir
	}
	if workdir == "" {
		workdir = "/"
	}
	user := c.GetUser()
	if user == "" {
		user = ic.Config.User
	}
	hostname := c.GetHostname()
	if hostname == "" {
		hostname = t.GetId()[:min(12, len(t.GetId()))]
	}
	stop := c.GetStopSignal()
	if stop == "" {
		stop = ic.Config.StopSignal
	}
	sig, err := runtime.ParseSignal(stop)
	if err != nil {
		return containerSpec{}, fmt.Errorf("stop signal of image %s: %w", c.GetImage(), err)
	}
	mounts, err := r.mounts(c.GetMounts())
	if err != nil {
		return containerSpec{}, err
	}

	labels := map[string]string{}
	for k, v := range c.GetLabels() {
		labels[k] = v
	}
	labels[labelTask] = t.GetId()
	labels[labelStopSignal] = runtime.SignalName(sig)

	opts := []oci.SpecOpts{
		oci.WithDefaultPathEnv,
		oci.WithProcessArgs(argv...),
		oci.WithEnv(env),
		oci.WithProcessCwd(workdir),
		oci.WithHostname(hostname),
		oci.WithCgroup("/" + cgroupParent + "/" + t.GetId()),
	}
	if user != "" {
		opts = append(opts, oci.WithUser(user))
	}
	if att != nil {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: att.NetNSPath}))
		if att.HostsPath != "" {
			mounts = append(mounts, specs.Mount{Type: "bind", Source: att.HostsPath, Destination: "/etc/hosts", Options: []string{"rbind", "ro"}})
		}
		if att.ResolvConfPath != "" {
			mounts = append(mounts, specs.Mount{Type: "bind", Source: att.ResolvConfPath, Destination: "/etc/resolv.conf", Options: []string{"rbind", "ro"}})
		}
		labels[labelIP] = att.IP
	} else {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	lim := t.GetSpec().GetResources().GetLimits()
	if m := lim.GetMemoryBytes(); m > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(m)))
		if swapAccounting() {
			// Memory plus swap equal to memory: the limit cannot be dodged
			// by swapping.
			opts = append(opts, oci.WithMemorySwap(m))
		}
		labels[labelMemory] = strconv.FormatInt(m, 10)
	}
	if n := lim.GetNanoCpus(); n > 0 {
		quota := max(n*cfsPeriod/1e9, 1000)
		opts = append(opts, oci.WithCPUCFS(quota, cfsPeriod))
	}
	if p := lim.GetPids(); p > 0 {
		opts = append(opts, oci.WithPidsLimit(p))
	}
	return containerSpec{opts: opts, labels: labels, stopSignal: runtime.SignalName(sig), user: user}, nil
}

// swapAccounting reports whether the v1 memory controller limits swap.
func swapAccounting() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// mergeEnv puts over onto base by key, keeping base's order.
func mergeEnv(base, over []string) []string {
	idx := map[string]int{}
	out := make([]string, 0, len(base)+len(over))
	for _, list := range [][]string{base, over} {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}
