package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

func TestRunLogsExitCode(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	h := start(t, r, newTask("run1", "echo", "3", "hello", "world"))
	if info := h.Info(); info.PID == 0 || info.ContainerID != "run1" {
		t.Errorf("Info = %+v, want a PID and container ID run1", info)
	}
	st := wait(t, h)
	if st.Code != 3 || st.Signal != "" || st.Err != "" || st.OOMKilled {
		t.Errorf("exit status = %+v, want code 3", st)
	}
	lines := logLines(t, r, "run1")
	for _, want := range []string{"stdout: out: hello world", "stderr: err: hello world"} {
		if !slices.Contains(lines, want) {
			t.Errorf("log lines %q lack %q", lines, want)
		}
	}
}

func TestImageDefaultsAndOverrides(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)

	st := wait(t, start(t, r, newTask("defaults")))
	if !st.Success() {
		t.Fatalf("image's own command: %+v", st)
	}
	if lines := logLines(t, r, "defaults"); !slices.Contains(lines, "stdout: hello from the image") {
		t.Errorf("image's own command logged %q", lines)
	}

	task := newTask("overrides-task-id", "env")
	c := task.Spec.Container
	c.Env = []string{"SHARED=task", "ONLY_TASK=1"}
	c.Workdir = "/data"
	c.User = "1000:1001"
	wait(t, start(t, r, task))
	lines := logLines(t, r, task.Id)
	for _, want := range []string{
		"stdout: argv=/app env", "stdout: cwd=/data", "stdout: uid=1000", "stdout: gid=1001",
		"stdout: hostname=overrides-ta",
		"stdout: env FROM_IMAGE=yes", "stdout: env SHARED=task", "stdout: env ONLY_TASK=1",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("log lacks %q: %q", want, lines)
		}
	}
	if slices.Contains(lines, "stdout: env SHARED=image") {
		t.Errorf("the image's SHARED survived the task's: %q", lines)
	}

	// command replaces the entrypoint; args follow it.
	task = newTask("command", "env", "extra")
	task.Spec.Container.Command = []string{"/app"}
	task.Spec.Container.Hostname = "named"
	wait(t, start(t, r, task))
	lines = logLines(t, r, task.Id)
	for _, want := range []string{"stdout: argv=/app env extra", "stdout: hostname=named", "stdout: cwd=/tmp"} {
		if !slices.Contains(lines, want) {
			t.Errorf("log lacks %q: %q", want, lines)
		}
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	h := start(t, r, newTask("stubborn", "sleep", "ignore"))
	waitLog(t, r, "stubborn", "sleeping")
	// runc keeps its state under the runtime's own root, not the host's.
	if _, err := os.Stat(filepath.Join(r.p.runc(), Namespace, "stubborn", "state.json")); err != nil {
		t.Errorf("runc state is not under %s: %v", r.p.runc(), err)
	}
	if err := h.Stop(ctxT(t), "", 300*time.Millisecond); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	st := wait(t, h)
	if st.Code != 137 || st.Signal != "SIGKILL" {
		t.Errorf("exit status = %+v, want SIGKILL (137)", st)
	}
	// Stopping an ended task is not an error.
	if err := h.Stop(ctxT(t), "", time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopWithSIGTERM(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	h := start(t, r, newTask("polite", "sleep"))
	waitLog(t, r, "polite", "sleeping")
	if err := h.Stop(ctxT(t), "SIGTERM", time.Minute); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := wait(t, h); !st.Success() {
		t.Errorf("exit status = %+v, want success", st)
	}
	if lines := logLines(t, r, "polite"); !slices.Contains(lines, "stdout: got SIGTERM") {
		t.Errorf("log = %q, want the SIGTERM handler's line", lines)
	}
}

func TestAdoptAfterRestart(t *testing.T) {
	dir := t.TempDir()
	r := newRuntime(t, Config{DataDir: dir})
	loadApp(t, r)
	h := start(t, r, newTask("survivor", "tick"))
	waitLog(t, r, "survivor", "tick 1")
	pid, state := h.Info().PID, h.State()
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// containerd is gone; the container is not, and its output is still
	// logged by the task-logger its shim started.
	if err := syscall.Kill(int(pid), 0); err != nil {
		t.Fatalf("task process %d died with containerd: %v", pid, err)
	}
	seen := len(logLines(t, r, "survivor"))
	waitLog(t, r, "survivor", fmt.Sprintf("tick %d", seen+5))

	r2 := newRuntime(t, Config{DataDir: dir})
	h2, err := r2.Adopt(ctxT(t), "survivor", state)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if got := h2.Info().PID; got != pid {
		t.Errorf("adopted PID = %d, want %d (the same process)", got, pid)
	}
	if _, err := r2.Adopt(ctxT(t), "never-started", nil); !errors.Is(err, runtime.ErrGone) {
		t.Errorf("Adopt of an unknown task = %v, want ErrGone", err)
	}

	// The containerd child dies while the runtime is open: it is restarted
	// and the task is still watched.
	r2.d.kill()
	if err := h2.Stop(ctxT(t), "SIGKILL", time.Second); err != nil {
		t.Fatalf("Stop after a containerd restart: %v", err)
	}
	if st := wait(t, h2); st.Signal != "SIGKILL" {
		t.Errorf("exit status = %+v, want SIGKILL", st)
	}
	// An ended task is adopted from its recorded exit.
	h3, err := r2.Adopt(ctxT(t), "survivor", state)
	if err != nil {
		t.Fatalf("Adopt after the end: %v", err)
	}
	if st := wait(t, h3); st.Signal != "SIGKILL" {
		t.Errorf("exit status after re-adopting = %+v, want SIGKILL", st)
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	task := newTask("hungry", "alloc", "256")
	task.Spec.Resources = &shoalpb.Resources{Limits: &shoalpb.ResourceSet{MemoryBytes: 32 << 20}}
	st := wait(t, start(t, r, task))
	if !st.OOMKilled || st.Err != "container killed: out of memory (memory limit 32 MiB)" {
		t.Errorf("exit status = %+v, want OOMKilled with the limit in Err", st)
	}
	if st.Signal != "SIGKILL" {
		t.Errorf("exit status = %+v, want SIGKILL", st)
	}
}

func TestLimitsInCgroups(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	task := newTask("limited", "spawn", "64")
	task.Spec.Resources = &shoalpb.Resources{Limits: &shoalpb.ResourceSet{
		MemoryBytes: 64 << 20, NanoCpus: 500_000_000, Pids: 40,
	}}
	h := start(t, r, task)
	cg := func(ctrl, file string) string {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, cgroupParent, task.Id, file))
		if err != nil {
			t.Errorf("cgroup file: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	waitLog(t, r, task.Id, "spawn")
	for _, c := range []struct{ ctrl, file, want string }{
		{"memory", "memory.limit_in_bytes", strconv.Itoa(64 << 20)},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"pids", "pids.max", "40"},
	} {
		if got := cg(c.ctrl, c.file); got != c.want {
			t.Errorf("%s/%s = %q, want %q", c.ctrl, c.file, got, c.want)
		}
	}
	// The pids limit stops the 64 children (each a Go program with
	// threads of its own) short.
	lines := logLines(t, r, task.Id)
	if slices.Contains(lines, "stdout: spawned 64") {
		t.Errorf("all 64 children started under pids.max 40: %q", lines)
	}
	if n, _ := strconv.Atoi(cg("pids", "pids.current")); n > 40 {
		t.Errorf("pids.current = %d, over the limit", n)
	}
	_ = h.Stop(ctxT(t), "SIGKILL", 0)
}

func TestInvalidSpecs(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	task := newTask("badmount", "hello")
	task.Spec.Container.Mounts = []*shoalpb.Mount{{Type: shoalpb.MountType_MOUNT_TYPE_BIND, Source: "/nonexistent/shoal", Target: "/x"}}
	err := r.Prepare(ctxT(t), task)
	if !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), "mount source /nonexistent/shoal does not exist on this node") {
		t.Errorf("Prepare = %v, want ErrInvalidSpec naming the source", err)
	}
	user := newTask("baduser", "env")
	user.Spec.Container.User = "nosuchuser"
	if _, err := r.Start(ctxT(t), user); !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), `user "nosuchuser"`) {
		t.Errorf("Start with an unknown user = %v, want ErrInvalidSpec naming it", err)
	}
	missing := newTask("nocmd")
	missing.Spec.Container.Command = []string{"/nope"}
	if _, err := r.Start(ctxT(t), missing); !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), "/nope") {
		t.Errorf("Start of a missing command = %v, want ErrInvalidSpec naming it", err)
	} else {
		t.Logf("missing command: %v", err)
	}
	if _, err := r.Adopt(ctxT(t), "nocmd", nil); !errors.Is(err, runtime.ErrGone) {
		t.Errorf("Adopt after a failed start = %v, want ErrGone", err)
	}
	// The snapshot made before the failure is collected with its lease.
	testutil.Eventually(t, testTimeout, func() error {
		if active := activeSnapshots(t, r); len(active) != 0 {
			return fmt.Errorf("snapshots left by a failed start: %q", active)
		}
		return nil
	})
	task.Spec.Container.Mounts[0].Type = shoalpb.MountType_MOUNT_TYPE_VOLUME
	task.Spec.Container.Mounts[0].Source = "data"
	if err := r.Prepare(ctxT(t), task); !errors.Is(err, runtime.ErrInvalidSpec) {
		t.Errorf("Prepare of a volume without Config.Volume = %v, want ErrInvalidSpec", err)
	}
}

func TestMounts(t *testing.T) {
	volumes := t.TempDir()
	r := newRuntime(t, Config{Volume: func(name string) (string, error) {
		p := filepath.Join(volumes, name)
		return p, os.MkdirAll(p, 0o755)
	}})
	loadApp(t, r)
	mount := []*shoalpb.Mount{{Type: shoalpb.MountType_MOUNT_TYPE_VOLUME, Source: "keep", Target: "/data/keep"}}

	w := newTask("writer", "write", "/data/keep/f", "kept across tasks")
	w.Spec.Container.Mounts = mount
	if st := wait(t, start(t, r, w)); !st.Success() {
		t.Fatalf("writer: %+v %q", st, logLines(t, r, w.Id))
	}
	if err := r.Remove(ctxT(t), w.Id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	rd := newTask("reader", "cat", "/data/keep/f")
	rd.Spec.Container.Mounts = mount
	if st := wait(t, start(t, r, rd)); !st.Success() {
		t.Fatalf("reader: %+v %q", st, logLines(t, r, rd.Id))
	}
	if lines := logLines(t, r, rd.Id); !slices.Contains(lines, "stdout: kept across tasks") {
		t.Errorf("the second task read %q", lines)
	}

	// A read-only bind mount refuses writes; a tmpfs takes them.
	host := t.TempDir()
	ro := newTask("readonly", "write", "/ro/f", "x")
	ro.Spec.Container.Mounts = []*shoalpb.Mount{{Type: shoalpb.MountType_MOUNT_TYPE_BIND, Source: host, Target: "/ro", ReadOnly: true}}
	if st := wait(t, start(t, r, ro)); st.Code != 1 {
		t.Errorf("write to a read-only mount: %+v", st)
	}
	tmp := newTask("tmpfs", "write", "/scratch/f", "x")
	tmp.Spec.Container.Mounts = []*shoalpb.Mount{{Type: shoalpb.MountType_MOUNT_TYPE_TMPFS, Target: "/scratch"}}
	if st := wait(t, start(t, r, tmp)); !st.Success() {
		t.Errorf("write to a tmpfs: %+v %q", st, logLines(t, r, tmp.Id))
	}
}

func TestExecAndHealthcheck(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	h := start(t, r, newTask("execme", "sleep"))
	hc := h.Info().Healthcheck
	if hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/app", "hello"}) || hc.IntervalMs != 2000 || hc.TimeoutMs != 5000 || hc.Retries != 4 {
		t.Errorf("Healthcheck = %v, want the image's", hc)
	}
	ex := h.(runtime.Execer)
	code, out, err := ex.Exec(ctxT(t), []string{"/app", "echo", "0", "probe"})
	if err != nil || code != 0 || !strings.Contains(string(out), "out: probe") || !strings.Contains(string(out), "err: probe") {
		t.Errorf("Exec = %d, %q, %v; want 0 and both streams", code, out, err)
	}
	code, _, err = ex.Exec(ctxT(t), []string{"/app", "echo", "7"})
	if err != nil || code != 7 {
		t.Errorf("Exec exit code = %d, %v; want 7", code, err)
	}
	if _, _, err := ex.Exec(ctxT(t), []string{"/missing"}); err == nil {
		t.Errorf("Exec of a missing program succeeded")
	}
}

func TestNoLeaksAfterRemove(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	h := start(t, r, newTask("leak", "sleep"))
	waitLog(t, r, "leak", "sleeping")
	if err := r.Remove(ctxT(t), "leak"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if st := wait(t, h); st.Success() {
		t.Errorf("a removed task's Wait reports success: %+v", st)
	}
	if err := r.Remove(ctxT(t), "leak"); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	ctx := nsCtx(ctxT(t))
	if ctrs, err := r.c.Containers(ctx); err != nil || len(ctrs) != 0 {
		t.Errorf("containers after Remove: %d, %v", len(ctrs), err)
	}
	if active := activeSnapshots(t, r); len(active) != 0 {
		t.Errorf("snapshots left: %q", active)
	}
	if _, err := os.Stat(r.taskDir("leak")); !os.IsNotExist(err) {
		t.Errorf("task directory left: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", cgroupParent, "leak")); !os.IsNotExist(err) {
		t.Errorf("cgroup left: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), "/leak/") {
		t.Errorf("mounts of the task left")
	}
}

func TestPurgeKillsWhatOutlivedTheRuntime(t *testing.T) {
	dir := t.TempDir()
	r := newRuntime(t, Config{DataDir: dir})
	loadApp(t, r)
	h := start(t, r, newTask("orphan", "sleep", "ignore"))
	waitLog(t, r, "orphan", "sleeping")
	pid := int(h.Info().PID)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Purge(ctxT(t), dir); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("task process %d survived Purge", pid)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), dir) {
		t.Errorf("mounts under %s survived Purge", dir)
	}
}

func TestNewWithoutContainerd(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := New(ctxT(t), Config{DataDir: t.TempDir()})
	if err == nil || err.Error() != "containerd is not installed: apt-get install containerd runc, or pass --containerd-address" {
		t.Errorf("New without containerd = %v", err)
	}
}

// activeSnapshots names the snapshots that are not image layers.
func activeSnapshots(t *testing.T, r *Runtime) []string {
	t.Helper()
	var active []string
	err := r.c.SnapshotService(snapshotter).Walk(nsCtx(ctxT(t)), func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			active = append(active, info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk snapshots: %v", err)
	}
	return active
}

// With Config.Address the runtime uses a containerd it did not start (as
// --containerd-address does): tasks run through it, and closing the runtime
// leaves that containerd serving.
func TestExternalContainerd(t *testing.T) {
	owner := newRuntime(t, Config{})
	loadApp(t, owner)
	r, err := New(ctxT(t), Config{DataDir: t.TempDir(), Address: owner.p.socket(), Logger: testBinary(t)})
	if err != nil {
		t.Fatalf("New with Address: %v", err)
	}
	if r.d != nil {
		t.Fatal("New with Address started a containerd of its own")
	}
	h := start(t, r, newTask("ext1", "echo", "0", "through", "an", "external", "containerd"))
	if st := wait(t, h); !st.Success() {
		t.Errorf("exit status = %+v, want success", st)
	}
	if lines := logLines(t, r, "ext1"); !slices.Contains(lines, "stdout: out: through an external containerd") {
		t.Errorf("log lines %q lack the task's output", lines)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !serving(ctxT(t), owner.p.socket()) {
		t.Fatal("closing a runtime on an external containerd stopped that containerd")
	}
}
