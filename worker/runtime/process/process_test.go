package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
	"shoal/worker/runtime/tasklog"
)

// testTimeout bounds every wait; tasks here take milliseconds.
const testTimeout = 20 * time.Second

func newRuntime(t *testing.T) *Runtime {
	t.Helper()
	r, err := New(Config{Dir: t.TempDir(), Shim: testutil.Binary(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func newTask(id string, argv ...string) *shoalpb.Task {
	return &shoalpb.Task{Id: id, ServiceName: "svc", Slot: 1, Spec: &shoalpb.TaskSpec{
		Container: &shoalpb.ContainerSpec{Image: "busybox", Command: argv},
	}}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// start prepares and starts task and makes sure it is gone after the test.
func start(t *testing.T, r *Runtime, task *shoalpb.Task) runtime.Handle {
	t.Helper()
	ctx := ctxT(t)
	if err := r.Prepare(ctx, task); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	h, err := r.Start(ctx, task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = r.Remove(context.Background(), task.Id) })
	return h
}

func wait(t *testing.T, h runtime.Handle) runtime.ExitStatus {
	t.Helper()
	st, err := h.Wait(ctxT(t))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return st
}

// lines reads the task's whole log as "stream: line".
func lines(t *testing.T, r *Runtime, id string) []string {
	t.Helper()
	var out []string
	err := tasklog.Read(ctxT(t), r.LogPath(id), tasklog.ReadOptions{Tail: -1}, func(e tasklog.Entry) error {
		out = append(out, e.Stream+": "+string(e.Line))
		return nil
	})
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	return out
}

// awaitLine polls the log until it holds want.
func awaitLine(t *testing.T, r *Runtime, id, want string) {
	t.Helper()
	testutil.Eventually(t, testTimeout, func() error {
		got := lines(t, r, id)
		for _, l := range got {
			if l == want {
				return nil
			}
		}
		return fmt.Errorf("log has %q, want a line %q", got, want)
	})
}

func TestExitCodes(t *testing.T) {
	r := newRuntime(t)
	cases := []struct {
		argv []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"false"}, 1},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
	}
	for i, c := range cases {
		h := start(t, r, newTask(fmt.Sprintf("t%d", i), c.argv...))
		if h.Info().PID <= 0 {
			t.Fatalf("%v: Info().PID = %d", c.argv, h.Info().PID)
		}
		st := wait(t, h)
		if st.Code != c.code || st.Err != "" || st.At.IsZero() {
			t.Fatalf("%v: exit status %+v, want code %d", c.argv, st, c.code)
		}
		if (c.code == 0) != st.Success() {
			t.Fatalf("%v: Success() = %v with code %d", c.argv, st.Success(), st.Code)
		}
	}
}

func TestSignalledExitNamesSignal(t *testing.T) {
	r := newRuntime(t)
	st := wait(t, start(t, r, newTask("t", "sh", "-c", "kill -KILL $$")))
	if st.Signal != "SIGKILL" {
		t.Fatalf("exit status %+v, want signal SIGKILL", st)
	}
}

func TestPrepareRejectsBadSpecs(t *testing.T) {
	r := newRuntime(t)
	cases := []struct {
		name string
		edit func(*shoalpb.ContainerSpec)
		want string
	}{
		{"no command", func(c *shoalpb.ContainerSpec) { c.Command = nil }, "container.command and container.args are both empty"},
		{"bad env", func(c *shoalpb.ContainerSpec) { c.Env = []string{"NOVALUE"} }, "container.env"},
		{"relative workdir", func(c *shoalpb.ContainerSpec) { c.Workdir = "tmp" }, "container.workdir"},
		{"missing workdir", func(c *shoalpb.ContainerSpec) { c.Workdir = "/does/not/exist" }, "container.workdir"},
		{"bad signal", func(c *shoalpb.ContainerSpec) { c.StopSignal = "SIGNOPE" }, "container.stop_signal"},
		{"unknown user", func(c *shoalpb.ContainerSpec) { c.User = "no-such-user-here" }, "container.user"},
	}
	for _, c := range cases {
		task := newTask("t", "true")
		c.edit(task.Spec.Container)
		err := r.Prepare(ctxT(t), task)
		if !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: Prepare error %v, want ErrInvalidSpec mentioning %q", c.name, err, c.want)
		}
	}
	if err := r.Prepare(ctxT(t), newTask("../escape", "true")); !errors.Is(err, runtime.ErrInvalidSpec) {
		t.Fatalf("Prepare with a path as task ID: %v, want ErrInvalidSpec", err)
	}
}

func TestArgsAloneAreTheCommand(t *testing.T) {
	r := newRuntime(t)
	task := newTask("t")
	task.Spec.Container.Args = []string{"sh", "-c", "echo from-args"}
	if st := wait(t, start(t, r, task)); st.Code != 0 {
		t.Fatalf("exit status %+v", st)
	}
	awaitLine(t, r, "t", "stdout: from-args")
}

func TestStartFailsForMissingExecutable(t *testing.T) {
	r := newRuntime(t)
	task := newTask("t", "no-such-program-anywhere")
	if err := r.Prepare(ctxT(t), task); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	_, err := r.Start(ctxT(t), task)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Start: %v, want an executable-not-found error", err)
	}
}

func TestEnvWorkdirAndOutput(t *testing.T) {
	r := newRuntime(t)
	wd := t.TempDir()
	task := newTask("t", "sh", "-c", `echo "$GREETING from $(pwd) home=$HOME"; echo oops >&2`)
	task.Spec.Container.Env = []string{"GREETING=hello", "PATH=/usr/bin:/bin"}
	task.Spec.Container.Workdir = wd
	if st := wait(t, start(t, r, task)); st.Code != 0 {
		t.Fatalf("exit status %+v", st)
	}
	awaitLine(t, r, "t", "stdout: hello from "+wd+" home="+homeOf(t))
	awaitLine(t, r, "t", "stderr: oops")
}

func homeOf(t *testing.T) string {
	u, err := user.Current()
	if err != nil || u.HomeDir == "" {
		return "/"
	}
	return u.HomeDir
}

func TestUser(t *testing.T) {
	// Switching users needs root; CI runs as root (ENVIRONMENT.md).
	testutil.RequireRoot(t)
	r := newRuntime(t)
	task := newTask("t", "sh", "-c", "echo $(id -u):$(id -g)")
	task.Spec.Container.User = "65534:65534"
	if st := wait(t, start(t, r, task)); st.Code != 0 {
		t.Fatalf("exit status %+v", st)
	}
	awaitLine(t, r, "t", "stdout: 65534:65534")
}

func TestStopLetsATrappingTaskExit(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sh", "-c", `trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 1; done`))
	awaitLine(t, r, "t", "stdout: ready")
	if err := h.Stop(ctxT(t), "", time.Hour); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := wait(t, h); st.Code != 7 || st.Signal != "" {
		t.Fatalf("exit status %+v, want code 7 from the TERM trap", st)
	}
	awaitLine(t, r, "t", "stdout: bye")
}

func TestStopKillsATaskIgnoringTerm(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sh", "-c", `trap '' TERM; echo ready; sleep 100`))
	awaitLine(t, r, "t", "stdout: ready")
	if err := h.Stop(ctxT(t), "SIGTERM", 100*time.Millisecond); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := wait(t, h); st.Signal != "SIGKILL" {
		t.Fatalf("exit status %+v, want killed by SIGKILL after the grace period", st)
	}
}

func TestStopUsesTheGivenSignal(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sleep", "100"))
	if err := h.Stop(ctxT(t), "INT", time.Hour); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := wait(t, h); st.Signal != "SIGINT" {
		t.Fatalf("exit status %+v, want SIGINT", st)
	}
	// Stopping an ended task is a no-op.
	if err := h.Stop(ctxT(t), "", 0); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestExitKillsTheRestOfTheGroup(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sh", "-c", `sleep 100 & echo $!`))
	if st := wait(t, h); st.Code != 0 {
		t.Fatalf("exit status %+v", st)
	}
	var pid int
	for _, l := range lines(t, r, "t") {
		fmt.Sscanf(l, "stdout: %d", &pid)
	}
	if pid == 0 {
		t.Fatalf("no background pid in the log: %q", lines(t, r, "t"))
	}
	testutil.Eventually(t, testTimeout, func() error {
		if state, _, err := procStat(pid); err == nil && state != 'Z' {
			return fmt.Errorf("background process %d still runs (state %c)", pid, state)
		}
		return nil
	})
}

func TestAdoptByAnotherRuntime(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sleep", "100"))
	again, err := New(Config{Dir: r.dir, Shim: r.shim})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	adopted, err := again.Adopt(ctxT(t), "t", h.State())
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if adopted.Info().PID != h.Info().PID {
		t.Fatalf("adopted PID %d, started %d", adopted.Info().PID, h.Info().PID)
	}
	// Adopting without saved state reads the task directory alone.
	if bare, err := again.Adopt(ctxT(t), "t", nil); err != nil || bare.Info().PID != h.Info().PID {
		t.Fatalf("Adopt without state: %v, %v", bare, err)
	}
	if err := adopted.Stop(ctxT(t), "", time.Hour); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := wait(t, h); st.Signal != "SIGTERM" {
		t.Fatalf("original handle sees %+v, want SIGTERM", st)
	}
}

func TestAdoptFinishedAndGone(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sh", "-c", "exit 5"))
	wait(t, h)
	adopted, err := r.Adopt(ctxT(t), "t", h.State())
	if err != nil {
		t.Fatalf("Adopt of an ended task: %v", err)
	}
	if st := wait(t, adopted); st.Code != 5 {
		t.Fatalf("adopted exit status %+v, want code 5", st)
	}
	if _, err := r.Adopt(ctxT(t), "never-started", nil); !errors.Is(err, runtime.ErrGone) {
		t.Fatalf("Adopt of an unknown task: %v, want ErrGone", err)
	}
	var stale procInfo
	_ = decodeState(h.State(), &stale)
	stale.PID++
	state, _ := json.Marshal(stale)
	if _, err := r.Adopt(ctxT(t), "t", state); !errors.Is(err, runtime.ErrGone) {
		t.Fatalf("Adopt with another PID in its state: %v, want ErrGone", err)
	}
}

func TestKilledShimLosesTheStatus(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sleep", "100"))
	info, ok := readPID(filepath.Join(r.dir, "t"))
	if !ok {
		t.Fatalf("no pid file")
	}
	if err := syscall.Kill(info.ShimPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill shim: %v", err)
	}
	if err := h.Stop(ctxT(t), "", time.Hour); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	st := wait(t, h)
	if st.Success() || !strings.Contains(st.Err, "exit status is unknown") {
		t.Fatalf("exit status %+v, want an unknown-status error", st)
	}
}

func TestRemoveKillsAndDeletes(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sleep", "100"))
	if err := r.Remove(ctxT(t), "t"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "t")); !os.IsNotExist(err) {
		t.Fatalf("task dir after Remove: %v", err)
	}
	testutil.Eventually(t, testTimeout, func() error {
		if alive(int(h.Info().PID), procStart(t, h)) {
			return errors.New("task process still alive")
		}
		return nil
	})
	if err := r.Remove(ctxT(t), "t"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

func procStart(t *testing.T, h runtime.Handle) uint64 {
	var info procInfo
	if err := decodeState(h.State(), &info); err != nil {
		t.Fatalf("state: %v", err)
	}
	return info.Start
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"": syscall.SIGTERM, "SIGKILL": syscall.SIGKILL, "int": syscall.SIGINT, "10": syscall.Signal(10)} {
		got, err := runtime.ParseSignal(in)
		if err != nil || got != want {
			t.Fatalf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"SIGFOO", "0", "99"} {
		if _, err := runtime.ParseSignal(in); !errors.Is(err, runtime.ErrInvalidSpec) {
			t.Fatalf("ParseSignal(%q): %v, want ErrInvalidSpec", in, err)
		}
	}
}

// An agent that died between starting a shim and reading its pid file leaves
// a live shim that has not reported yet: Start and Adopt wait for it instead
// of running the task a second time, and a second shim refuses to run.
func TestLiveShimWithoutPIDFileIsWaitedFor(t *testing.T) {
	r := newRuntime(t)
	task := newTask("t", "sleep", "100")
	h := start(t, r, task)
	dir := r.taskDir("t")
	hidden := filepath.Join(dir, "pid.hidden")
	if err := os.Rename(filepath.Join(dir, pidFile), hidden); err != nil {
		t.Fatal(err)
	}
	if _, err := testutil.Run(t, "task-shim", "--dir", dir, "--", "true"); err == nil || !strings.Contains(err.Error(), "another shim already runs this task") {
		t.Fatalf("a second shim for a running task: %v, want it refused", err)
	}
	again, err := New(Config{Dir: r.dir, Shim: r.shim})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	type result struct {
		h   runtime.Handle
		err error
	}
	started, adopted := make(chan result, 1), make(chan result, 1)
	go func() {
		h, err := again.Start(ctxT(t), task)
		started <- result{h, err}
	}()
	go func() {
		h, err := again.Adopt(ctxT(t), "t", nil)
		adopted <- result{h, err}
	}()
	if err := os.Rename(hidden, filepath.Join(dir, pidFile)); err != nil {
		t.Fatal(err)
	}
	// Both must return the one running task, not a second process.
	for name, ch := range map[string]chan result{"Start": started, "Adopt": adopted} {
		res := <-ch
		if res.err != nil {
			t.Fatalf("%s: %v", name, res.err)
		}
		if res.h.Info().PID != h.Info().PID {
			t.Fatalf("%s gave PID %d, want the running task's %d", name, res.h.Info().PID, h.Info().PID)
		}
	}
}
