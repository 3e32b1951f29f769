package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

func TestTasksRunToTheirExitCode(t *testing.T) {
	n := startNode(t, "")
	n.e.Assign(fullSet(newTask("ok", "true"), newTask("bad", "sh", "-c", "exit 3")))

	ok := n.awaitState("ok", complete)
	if ok.ExitCode != 0 || ok.Err != "" || ok.Message != "exited" || ok.Pid <= 0 {
		t.Fatalf("ok: status %v", ok)
	}
	bad := n.awaitState("bad", failed)
	if bad.ExitCode != 3 || bad.Err != "task: non-zero exit (3)" || bad.Message != "exited" {
		t.Fatalf("bad: status %v", bad)
	}
	// States only move forward, whatever the batching coalesced.
	states := n.reported("ok")
	for i := 1; i < len(states); i++ {
		if states[i] <= states[i-1] {
			t.Fatalf("ok: reported states %v do not move forward", states)
		}
	}
}

func TestRunningTaskReportsItsPID(t *testing.T) {
	n := startNode(t, "")
	task := newTask("a", "sleep", "100")
	n.e.Assign(fullSet(task))
	st := n.awaitState("a", running)
	if st.Pid <= 0 || st.Message != "started" {
		t.Fatalf("status %v, want a pid and message started", st)
	}
	if processGone(st.Pid) {
		t.Fatalf("pid %d is not running", st.Pid)
	}
	n.e.Assign(incrementOf(withDesired(task, shoalpb.TaskState_TASK_STATE_SHUTDOWN)))
	down := n.awaitState("a", shutdown)
	if down.ExitCode != 128+15 || down.Err != "" {
		t.Fatalf("status %v, want exit code 143 (SIGTERM) and no error", down)
	}
	if !processGone(st.Pid) {
		t.Fatalf("pid %d still runs after SHUTDOWN", st.Pid)
	}
	// A shut down task keeps its files until it is forgotten.
	if _, err := os.Stat(n.taskDir("a")); err != nil {
		t.Fatalf("task dir of a shut down task: %v", err)
	}
}

func TestStopHonoursSignalAndGrace(t *testing.T) {
	n := startNode(t, "")
	trapper := newTask("trapper", "sh", "-c", `trap 'exit 0' USR1; echo ready; while :; do sleep 1; done`)
	trapper.Spec.Container.StopSignal = "SIGUSR1"
	stubborn := newTask("stubborn", "sh", "-c", `trap '' TERM; echo ready; sleep 100`)
	stubborn.Spec.Container.StopGracePeriodMs = 200
	n.e.Assign(fullSet(trapper, stubborn))
	for _, id := range []string{"trapper", "stubborn"} {
		n.awaitState(id, running)
		awaitLog(t, n, id, "ready")
	}
	n.e.Assign(incrementOf(withDesired(trapper, shoalpb.TaskState_TASK_STATE_SHUTDOWN), withDesired(stubborn, shoalpb.TaskState_TASK_STATE_SHUTDOWN)))
	if st := n.awaitState("trapper", shutdown); st.ExitCode != 0 {
		t.Fatalf("trapper: status %v, want exit 0 from its USR1 trap", st)
	}
	if st := n.awaitState("stubborn", shutdown); st.ExitCode != 128+9 {
		t.Fatalf("stubborn: status %v, want exit 137: SIGKILL after the grace period", st)
	}
}

func TestTaskWithoutCommandIsRejected(t *testing.T) {
	n := startNode(t, "")
	n.e.Assign(fullSet(newTask("empty")))
	st := n.awaitState("empty", rejected)
	if !strings.Contains(st.Err, "container.command and container.args are both empty") {
		t.Fatalf("status %v, want an error naming the empty command", st)
	}
}

func TestMissingExecutableFailsTheStart(t *testing.T) {
	n := startNode(t, "")
	n.e.Assign(fullSet(newTask("nope", "no-such-program-anywhere")))
	st := n.awaitState("nope", failed)
	if !strings.Contains(st.Err, "not found") || st.Message != "starting failed" {
		t.Fatalf("status %v, want a start failure naming the missing program", st)
	}
}

func TestEnvAndWorkdirAreApplied(t *testing.T) {
	n := startNode(t, "")
	wd := t.TempDir()
	task := newTask("env", "sh", "-c", `echo "$COLOUR $(pwd)"`)
	task.Spec.Container.Env = []string{"COLOUR=teal"}
	task.Spec.Container.Workdir = wd
	n.e.Assign(fullSet(task))
	n.awaitState("env", complete)
	awaitLog(t, n, "env", "teal "+wd)
}

func TestRestartAdoptsRunningAndFinishedTasks(t *testing.T) {
	first := startNode(t, "")
	trigger := filepath.Join(t.TempDir(), "go")
	first.e.Assign(fullSet(
		newTask("long", "sleep", "100"),
		newTask("ends", "sh", "-c", fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done; exit 4`, trigger)),
		newTask("done", "sh", "-c", "exit 0"),
	))
	long := first.awaitState("long", running)
	ends := first.awaitState("ends", running)
	first.awaitState("done", complete)
	first.stop()

	// While no agent runs, one task ends on its own.
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, testTimeout, func() error {
		if !processGone(ends.Pid) {
			return fmt.Errorf("pid %d still runs", ends.Pid)
		}
		return nil
	})

	second := startNode(t, first.dataDir)
	adopted := second.awaitState("long", running)
	if adopted.Pid != long.Pid || processGone(long.Pid) {
		t.Fatalf("after restart long has pid %d (running: %v), want the same pid %d", adopted.Pid, !processGone(long.Pid), long.Pid)
	}
	ended := second.awaitState("ends", failed)
	if ended.ExitCode != 4 || ended.Err != "task: non-zero exit (4)" {
		t.Fatalf("ends: status %v, want exit code 4", ended)
	}
	if st := second.awaitState("done", complete); st.ExitCode != 0 {
		t.Fatalf("done: status %v", st)
	}
	// The same complete set again changes nothing: no task starts twice.
	second.e.Assign(fullSet(newTask("long", "sleep", "100"), newTask("ends", "true"), newTask("done", "true")))
	second.e.Assign(incrementOf(withDesired(newTask("long", "sleep", "100"), shoalpb.TaskState_TASK_STATE_SHUTDOWN)))
	second.awaitState("long", shutdown)
	if st := second.awaitState("ends", failed); st.ExitCode != 4 {
		t.Fatalf("ends after the complete set: %v", st)
	}
}

func TestRestartWhileStoppingFinishesTheStop(t *testing.T) {
	first := startNode(t, "")
	task := newTask("slow", "sh", "-c", `trap '' TERM; echo ready; sleep 100`)
	task.Spec.Container.StopGracePeriodMs = time.Hour.Milliseconds()
	first.e.Assign(fullSet(task))
	st := first.awaitState("slow", running)
	awaitLog(t, first, "slow", "ready")
	stopping := withDesired(task, shoalpb.TaskState_TASK_STATE_SHUTDOWN)
	stopping.Spec.Container.StopGracePeriodMs = 100 // ignored: a task's spec never changes
	first.e.Assign(incrementOf(stopping))
	testutil.Eventually(t, testTimeout, func() error {
		rec, err := readRecord(filepath.Join(first.dataDir, TasksDir), "slow")
		if err != nil || rec.Task.DesiredState != shoalpb.TaskState_TASK_STATE_SHUTDOWN {
			return fmt.Errorf("record %v, %v: desired state not persisted yet", rec, err)
		}
		return nil
	})
	first.stop()
	if processGone(st.Pid) {
		t.Fatalf("stopping the executor stopped the task")
	}
	// The new agent resumes the stop; the hour of grace would stall it, so
	// the task is killed from outside, as an operator would.
	second := startNode(t, first.dataDir)
	second.awaitState("slow", running)
	killTasks(filepath.Join(first.dataDir, TasksDir))
	second.awaitState("slow", shutdown)
}

func TestCompleteSetForgetsOtherTasks(t *testing.T) {
	n := startNode(t, "")
	a, b := newTask("a", "sleep", "100"), newTask("b", "sleep", "100")
	n.e.Assign(fullSet(a, b))
	pa := n.awaitState("a", running).Pid
	pb := n.awaitState("b", running).Pid
	n.e.Assign(fullSet(b))
	n.awaitForgotten("a")
	if !processGone(pa) {
		t.Fatalf("forgotten task a still runs as pid %d", pa)
	}
	if processGone(pb) {
		t.Fatalf("task b stopped though the complete set holds it")
	}
	if _, known := n.e.task("b"); !known {
		t.Fatalf("task b forgotten")
	}
}

func TestRemoveListForgetsTasks(t *testing.T) {
	n := startNode(t, "")
	n.e.Assign(fullSet(newTask("a", "true")))
	n.awaitState("a", complete)
	n.e.Assign(&shoalpb.AssignmentsMessage{Remove: []string{"a"}})
	n.awaitForgotten("a")
}

func TestDesiredRemoveStopsReportsAndCleansUp(t *testing.T) {
	n := startNode(t, "")
	task := newTask("a", "sleep", "100")
	n.e.Assign(fullSet(task))
	pid := n.awaitState("a", running).Pid
	n.e.Assign(incrementOf(withDesired(task, remove)))
	n.awaitState("a", shutdown)
	n.awaitForgotten("a")
	if !processGone(pid) {
		t.Fatalf("removed task still runs as pid %d", pid)
	}
}

func TestDesiredShutdownBeforeStart(t *testing.T) {
	n := startNode(t, "")
	n.e.Assign(fullSet(withDesired(newTask("never", "sleep", "100"), shoalpb.TaskState_TASK_STATE_SHUTDOWN)))
	st := n.awaitState("never", shutdown)
	if st.Pid != 0 {
		t.Fatalf("status %v: a task shut down before starting has no pid", st)
	}
}

func TestUnknownTaskPastAssignedIsLost(t *testing.T) {
	n := startNode(t, "")
	task := newTask("ghost", "sleep", "100")
	task.Status.State = running
	dead := newTask("history", "sleep", "100")
	dead.Status.State = complete
	n.e.Assign(fullSet(task, dead))
	st := n.awaitState("ghost", failed)
	if !strings.Contains(st.Err, "no record") {
		t.Fatalf("status %v, want a lost task", st)
	}
	if _, known := n.e.task("history"); known {
		t.Fatalf("a finished task the node never ran was taken on")
	}
}

func TestSecondRunIsRefused(t *testing.T) {
	n := startNode(t, "")
	n.e.Assign(fullSet(newTask("a", "true")))
	n.awaitState("a", complete) // Run is running
	if err := n.e.Run(t.Context()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
}

func TestStopAllStopsAndRemovesEveryTask(t *testing.T) {
	n := startNode(t, "")
	a, b := newTask("a", "sleep", "100"), newTask("b", "sleep", "100")
	n.e.Assign(fullSet(a, b))
	pids := []int64{n.awaitState("a", running).Pid, n.awaitState("b", running).Pid}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := n.e.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("pid %d still runs after StopAll", pid)
		}
	}
	if ids := n.e.taskIDs(); len(ids) != 0 {
		t.Errorf("tasks %v still known after StopAll", ids)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := os.Stat(n.taskDir(id)); !os.IsNotExist(err) {
			t.Errorf("task dir of %s after StopAll: %v, want it removed", id, err)
		}
	}
}
