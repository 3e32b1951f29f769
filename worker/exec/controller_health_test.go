package exec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	shoalpb "shoal/proto"
)

// A running task reports each change of its checks' verdict while it stays
// RUNNING; once its liveness check fails for good it is stopped with its
// stop signal and reported FAILED with the check's failure.
func TestUnhealthyTaskIsStoppedAndFailed(t *testing.T) {
	clk := newFakeClock()
	n := startNodeWithClock(t, "", clk)
	marker := filepath.Join(t.TempDir(), "healthy")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The task writes its stop signal, which proves it was stopped with it.
	out := filepath.Join(t.TempDir(), "signal")
	task := newTask("sick", "sh", "-c", `trap 'echo USR1 > "$OUT"; exit 0' USR1; while :; do sleep 0.05; done`)
	c := task.Spec.Container
	c.Env = []string{"MARK=" + marker, "OUT=" + out}
	c.StopSignal = "SIGUSR1"
	c.Healthcheck = &shoalpb.HealthCheck{Test: []string{"CMD-SHELL", `test -f "$MARK" || { echo "no $MARK"; exit 1; }`}, IntervalMs: 1000, Retries: 2}
	n.e.Assign(fullSet(task))

	st := n.awaitState("sick", running)
	if st.Health != healthStarting || st.Ready {
		t.Fatalf("started: health %s ready %v, want STARTING and not ready", st.Health, st.Ready)
	}
	clk.awaitWaiters(t, 1)
	clk.Advance(time.Second)
	n.await("sick", "RUNNING, healthy and ready", func(st *shoalpb.TaskStatus) bool {
		return st.State == running && st.Health == healthHealthy && st.Ready
	})

	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		clk.awaitWaiters(t, 1)
		clk.Advance(time.Second)
	}
	st = n.awaitState("sick", failed)
	if want := "health check failed 2 times: exit code 1: no " + marker; st.Err != want {
		t.Fatalf("err %q, want %q", st.Err, want)
	}
	if st.Health != healthUnhealthy {
		t.Fatalf("health %s, want UNHEALTHY", st.Health)
	}
	if b, err := os.ReadFile(out); err != nil || strings.TrimSpace(string(b)) != "USR1" {
		t.Fatalf("the task's record of its stop signal: %q, %v", b, err)
	}
}

// A failing readiness check leaves the task RUNNING and not ready; the
// report of each change reaches the executor's updates.
func TestReadinessKeepsTheTaskRunning(t *testing.T) {
	clk := newFakeClock()
	n := startNodeWithClock(t, "", clk)
	marker := filepath.Join(t.TempDir(), "ready")
	task := newTask("slow", "sleep", "60")
	task.Spec.Container.Env = []string{"MARK=" + marker}
	task.Spec.Container.Readiness = &shoalpb.HealthCheck{Test: []string{"CMD", "test", "-f", marker}, IntervalMs: 1000, Retries: 1}
	n.e.Assign(fullSet(task))
	st := n.awaitState("slow", running)
	if st.Health != healthNone || st.Ready {
		t.Fatalf("started: health %s ready %v, want NONE and not ready", st.Health, st.Ready)
	}
	started := st.Timestamp.AsTime()
	for range 3 {
		clk.awaitWaiters(t, 1)
		clk.Advance(time.Second)
	}
	clk.awaitWaiters(t, 1)
	if st := n.awaitState("slow", running); st.Ready {
		t.Fatal("ready although its readiness check fails")
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	st = n.await("slow", "RUNNING and ready", func(st *shoalpb.TaskStatus) bool { return st.State == running && st.Ready })
	// A rollout counts its monitor from when the task became ready.
	if !st.Timestamp.AsTime().After(started) {
		t.Fatalf("ready report stamped %v, not after the start %v", st.Timestamp.AsTime(), started)
	}

	// Stopping the task stops its prober.
	n.e.mu.Lock()
	c := n.e.tasks["slow"]
	n.e.mu.Unlock()
	n.e.Assign(incrementOf(withDesired(task, shoalpb.TaskState_TASK_STATE_SHUTDOWN)))
	n.awaitState("slow", shutdown)
	ended := make(chan struct{})
	go func() { c.probes.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(testTimeout):
		t.Fatal("the prober still runs after the task stopped")
	}
}
