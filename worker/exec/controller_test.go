package exec

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// fakeRuntime runs nothing: its tasks end when the test says so.
type fakeRuntime struct {
	prepareErr, startErr error
	exit                 chan runtime.ExitStatus // delivered to Wait; nil: runs until stopped
	mu                   sync.Mutex
	calls                []string
}

func (f *fakeRuntime) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}
func (f *fakeRuntime) Name() string { return "fake" }
func (f *fakeRuntime) LogPath(id string) string {
	return "/nonexistent/" + id
}
func (f *fakeRuntime) Prepare(context.Context, *shoalpb.Task) error {
	f.record("prepare")
	return f.prepareErr
}
func (f *fakeRuntime) Start(context.Context, *shoalpb.Task) (runtime.Handle, error) {
	f.record("start")
	if f.startErr != nil {
		return nil, f.startErr
	}
	return &fakeHandle{rt: f, stopped: make(chan struct{})}, nil
}
func (f *fakeRuntime) Adopt(context.Context, string, []byte) (runtime.Handle, error) {
	return nil, runtime.ErrGone
}
func (f *fakeRuntime) Remove(context.Context, string) error { f.record("remove"); return nil }

type fakeHandle struct {
	rt      *fakeRuntime
	once    sync.Once
	stopped chan struct{}
}

func (h *fakeHandle) State() []byte      { return []byte(`{}`) }
func (h *fakeHandle) Info() runtime.Info { return runtime.Info{PID: 42} }
func (h *fakeHandle) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	select {
	case st := <-h.rt.exit:
		return st, nil
	case <-h.stopped:
		return runtime.ExitStatus{Code: 143, Signal: "SIGTERM"}, nil
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
}
func (h *fakeHandle) Stop(_ context.Context, sig string, grace time.Duration) error {
	h.rt.record("stop " + sig + " " + grace.String())
	h.once.Do(func() { close(h.stopped) })
	return nil
}

// stepper is a controller of a fake runtime, stepped by hand.
func stepper(t *testing.T, rt *fakeRuntime, task *shoalpb.Task) *controller {
	t.Helper()
	e := New(Config{DataDir: t.TempDir(), NodeID: "n", Runtime: rt})
	c := newController(e, task, nil)
	c.task.Status = newStatus(assigned, "assigned")
	return c
}

// steps takes n steps and returns the state after each.
func steps(t *testing.T, c *controller, n int) []shoalpb.TaskState {
	t.Helper()
	var out []shoalpb.TaskState
	for range n {
		if _, err := c.step(t.Context()); err != nil {
			t.Fatalf("step: %v", err)
		}
		out = append(out, c.snapshotTask().Status.State)
	}
	return out
}

func sameStates(a, b []shoalpb.TaskState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestControllerTakesOneStatePerStep(t *testing.T) {
	rt := &fakeRuntime{exit: make(chan runtime.ExitStatus, 1)}
	c := stepper(t, rt, newTask("a", "x"))
	got := steps(t, c, 4)
	if want := []shoalpb.TaskState{accepted, preparing, starting, running}; !sameStates(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	if st := c.snapshotTask().Status; st.Pid != 42 || st.Message != "started" {
		t.Fatalf("running status %v", st)
	}
	rt.exit <- runtime.ExitStatus{Code: 0}
	if got := steps(t, c, 1); got[0] != complete {
		t.Fatalf("after exit: %v", got)
	}
	if res, err := c.step(t.Context()); res != stepIdle || err != nil {
		t.Fatalf("finished task step: %v, %v; want idle", res, err)
	}
}

func TestControllerFailures(t *testing.T) {
	rt := &fakeRuntime{prepareErr: errors.New("image not found")}
	c := stepper(t, rt, newTask("a", "x"))
	got := steps(t, c, 3)
	if got[2] != rejected || !strings.Contains(c.snapshotTask().Status.Err, "image not found") {
		t.Fatalf("prepare failure: states %v, status %v", got, c.snapshotTask().Status)
	}

	rt = &fakeRuntime{startErr: errors.New("no such file")}
	c = stepper(t, rt, newTask("b", "x"))
	got = steps(t, c, 4)
	if got[3] != failed || c.snapshotTask().Status.Message != "starting failed" {
		t.Fatalf("start failure: states %v, status %v", got, c.snapshotTask().Status)
	}

	rt = &fakeRuntime{exit: make(chan runtime.ExitStatus, 1)}
	c = stepper(t, rt, newTask("c", "x"))
	steps(t, c, 4)
	rt.exit <- runtime.ExitStatus{Code: 137, Signal: "SIGKILL"}
	steps(t, c, 1)
	if st := c.snapshotTask().Status; st.State != failed || st.ExitCode != 137 || st.Err != "task: killed by signal SIGKILL" {
		t.Fatalf("killed task status %v", st)
	}
}

func TestControllerStopsWithTheSpecsSignalAndGrace(t *testing.T) {
	rt := &fakeRuntime{}
	task := newTask("a", "x")
	task.Spec.Container.StopSignal = "SIGINT"
	task.Spec.Container.StopGracePeriodMs = 1500
	c := stepper(t, rt, task)
	steps(t, c, 4)
	c.assign(withDesired(task, remove))
	got := steps(t, c, 1)
	if got[0] != shutdown || c.snapshotTask().Status.ExitCode != 143 {
		t.Fatalf("after desired REMOVE: %v, status %v", got, c.snapshotTask().Status)
	}
	if res, err := c.step(t.Context()); res != stepForgotten || err != nil {
		t.Fatalf("step after SHUTDOWN with desired REMOVE: %v, %v; want forgotten", res, err)
	}
	want := "prepare start stop SIGINT 1.5s remove"
	if got := strings.Join(rt.calls, " "); got != want {
		t.Fatalf("runtime calls %q, want %q", got, want)
	}
}

func TestControllerDefaultGrace(t *testing.T) {
	rt := &fakeRuntime{}
	task := newTask("a", "x")
	c := stepper(t, rt, task)
	steps(t, c, 4)
	c.assign(withDesired(task, shutdown))
	steps(t, c, 1)
	if got := rt.calls[len(rt.calls)-1]; got != "stop  10s" {
		t.Fatalf("stop call %q, want the default signal and 10s", got)
	}
}

func TestRunningWaitYieldsToShutdown(t *testing.T) {
	rt := &fakeRuntime{}
	task := newTask("a", "x")
	c := stepper(t, rt, task)
	steps(t, c, 4)
	done := make(chan stepResult)
	go func() {
		res, _ := c.step(t.Context()) // blocks in Wait
		done <- res
	}()
	c.assign(withDesired(task, shutdown))
	if res := <-done; res != stepNext {
		t.Fatalf("interrupted wait: %v", res)
	}
	if got := steps(t, c, 1); got[0] != shutdown {
		t.Fatalf("after the interrupted wait: %v", got)
	}
}

func TestBatcherKeepsTheLatestStatusPerTask(t *testing.T) {
	b := newBatcher()
	for _, s := range []shoalpb.TaskState{accepted, preparing, starting, running} {
		b.publish("a", newStatus(s, ""))
	}
	b.publish("b", newStatus(accepted, ""))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go b.run(ctx)
	batch := <-b.out
	if len(batch) != 2 || batch[0].TaskId != "a" || batch[0].Status.State != running || batch[1].TaskId != "b" {
		t.Fatalf("batch %v, want a RUNNING and b ACCEPTED", batch)
	}
	b.publish("a", newStatus(complete, ""))
	batch = <-b.out
	if len(batch) != 1 || batch[0].Status.State != complete {
		t.Fatalf("second batch %v, want a COMPLETE alone", batch)
	}
}
