package integration

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// What happens to a service's tasks when their nodes change, in order on one
// cluster of 3 managers and 3 workers: a worker's daemon restarts, a worker
// is paused then drained, a worker's daemon is killed and comes back.
func TestServiceNodeEvents(t *testing.T) {
	t.Parallel()
	forEachRuntime(t, 3, 3, testServiceNodeEvents)
}

func testServiceNodeEvents(t *testing.T, c *testutil.Cluster, rt taskRuntime) {
	m := c.Managers[0]
	api := controlAPI(t, m)
	// Two tasks per node, spread evenly.
	replicas := 2 * len(c.Nodes())
	mustShoal(t, m, append([]string{"service", "create", "--name", "web", "--replicas", strconv.Itoa(replicas), "--restart-delay", "0s"}, rt.sleeper...)...)
	tasks := convergedNow(t, api, "web", replicas, "service create")

	steps := []struct {
		name string
		run  func(t *testing.T) []*shoalpb.Task
	}{
		{"agent restart re-adopts its tasks", func(t *testing.T) []*shoalpb.Task {
			return testAgentRestart(t, c.Workers[0], m, api, tasks)
		}},
		{"pause then drain", func(t *testing.T) []*shoalpb.Task {
			return testPauseThenDrain(t, c.Workers[1], m, api, tasks)
		}},
		{"worker killed", func(t *testing.T) []*shoalpb.Task {
			return testWorkerKilled(t, c.Workers[2], m, api, tasks)
		}},
	}
	for _, step := range steps {
		if !t.Run(step.name, func(t *testing.T) { tasks = step.run(t) }) {
			return // the next steps start from this one's end
		}
	}
}

// tasksHeld returns the tasks of w among tasks and fails the test if there
// are none: a step about w's tasks would prove nothing.
func tasksHeld(t *testing.T, w *testutil.Node, tasks []*shoalpb.Task) []*shoalpb.Task {
	t.Helper()
	held := onNode(tasks, w.ID(t))
	if len(held) == 0 {
		t.Fatalf("%s holds none of the service's tasks, the step needs some: %s", w.Name, summary(tasks))
	}
	return held
}

// A daemon stopped and started again at once finds its running tasks again:
// same task IDs and processes, nothing moves. A task that ended while the
// daemon was down is reported failed and replaced. The same holds after a
// kill -9 of the daemon, and the daemon watches the tasks it re-adopted: a
// kill of one is seen and the task replaced.
func testAgentRestart(t *testing.T, w, m *testutil.Node, api shoalpb.ControlServiceClient, before []*shoalpb.Task) []*shoalpb.Task {
	held := tasksHeld(t, w, before)
	if len(held) < 2 {
		t.Fatalf("%s holds %d of the service's tasks, the step needs two: %s", w.Name, len(held), summary(before))
	}
	kept, ended := held[0], held[1]
	w.Stop(t)
	killTask(t, ended)
	w.Restart(t)
	waitRow(t, m, w.ID(t), settle, hasStatus("ready"))
	tasks := waitTasks(t, api, "web", moveTimeout, func(tasks []*shoalpb.Task) error {
		if st := byID(tasks)[ended.Id].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_FAILED || !strings.Contains(st.GetErr(), "SIGKILL") {
			return fmt.Errorf("task %s, killed while its agent was down, is %s (%s), want FAILED saying it was killed by SIGKILL", ended.Id, st.GetState(), describe(st))
		}
		return converged(len(before))(tasks)
	})
	stayed := slices.DeleteFunc(slices.Clone(before), func(task *shoalpb.Task) bool { return task.Id == ended.Id })
	sameTasks(t, "after "+w.Name+"'s daemon restarted", stayed, current(tasks))

	before = current(tasks)
	w.Kill(t)
	w.Restart(t)
	waitRow(t, m, w.ID(t), settle, hasStatus("ready"))
	after := waitConverged(t, api, "web", len(before), convergeTimeout)
	sameTasks(t, "after "+w.Name+"'s daemon was killed and restarted", before, after)

	killTask(t, kept)
	tasks = waitTasks(t, api, "web", moveTimeout, func(tasks []*shoalpb.Task) error {
		if st := byID(tasks)[kept.Id].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_FAILED {
			return fmt.Errorf("task %s, re-adopted twice, then killed, is %s (%s), want FAILED", kept.Id, st.GetState(), describe(st))
		}
		return converged(len(before))(tasks)
	})
	return current(tasks)
}

// Pause keeps a node's tasks but places no new ones there; drain moves its
// tasks elsewhere and stops them.
func testPauseThenDrain(t *testing.T, w, m *testutil.Node, api shoalpb.ControlServiceClient, before []*shoalpb.Task) []*shoalpb.Task {
	held := tasksHeld(t, w, before)
	id := w.ID(t)
	mustShoal(t, m, "node", "update", "--availability", "pause", id)
	want := 2 * len(before)
	mustShoal(t, m, "service", "scale", "web="+strconv.Itoa(want))
	after := convergedNow(t, api, "web", want, "service scale")
	sameTasks(t, "scale up with "+w.Name+" paused", before, after)
	if got := onNode(after, id); len(got) != len(held) {
		t.Fatalf("%s, paused, holds %d tasks after a scale from %d to %d, want only its %d earlier ones: %s", w.Name, len(got), len(before), want, len(held), summary(after))
	}

	mustShoal(t, m, "node", "update", "--availability", "drain", id)
	tasks := waitTasks(t, api, "web", moveTimeout, convergedOff(want, id, "the drained "+w.Name))
	for _, task := range held {
		if st := byID(tasks)[task.Id].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_SHUTDOWN {
			t.Fatalf("task %s of the drained %s is %s (%s), want SHUTDOWN", task.Id, w.Name, st.GetState(), describe(st))
		}
		if processRunning(task.Status.Pid) {
			t.Fatalf("task %s of the drained %s is SHUTDOWN but its process %d still runs", task.Id, w.Name, task.Status.Pid)
		}
	}
	stayed := slices.DeleteFunc(slices.Clone(after), func(task *shoalpb.Task) bool { return task.NodeId == id })
	sameTasks(t, "drain of "+w.Name, stayed, current(tasks))
	return current(tasks)
}

// kill -9 of a worker's daemon: its tasks are orphaned and run elsewhere.
// Their processes outlive the daemon (as they would a network partition);
// once the worker is back they are stopped and nothing else moves.
func testWorkerKilled(t *testing.T, w, m *testutil.Node, api shoalpb.ControlServiceClient, before []*shoalpb.Task) []*shoalpb.Task {
	held := tasksHeld(t, w, before)
	id := w.ID(t)
	w.Kill(t)
	tasks := waitTasks(t, api, "web", moveTimeout, convergedOff(len(before), id, "the killed "+w.Name))
	for _, task := range held {
		if st := byID(tasks)[task.Id].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_ORPHANED {
			t.Fatalf("task %s of the killed %s is %s (%s), want ORPHANED", task.Id, w.Name, st.GetState(), describe(st))
		}
	}
	stayed := slices.DeleteFunc(slices.Clone(before), func(task *shoalpb.Task) bool { return task.NodeId == id })
	after := current(tasks)
	sameTasks(t, "kill of "+w.Name, stayed, after)

	w.Restart(t)
	waitRow(t, m, id, settle, hasStatus("ready"))
	for _, task := range held {
		waitProcessGone(t, task.Status.Pid, convergeTimeout)
	}
	final := convergedNow(t, api, "web", len(after), "the orphaned tasks' processes ending")
	sameTasks(t, "return of "+w.Name, after, final)
	return final
}

// kill -9 of the leader right after it took a scale from 3 to 30: the new
// leader finishes the job, with every slot from 1 to 30 held by exactly one
// running task, and nothing changes when the old leader comes back.
func TestServiceLeaderKilledDuringScale(t *testing.T) {
	t.Parallel()
	forEachRuntime(t, 3, 3, testLeaderKilledDuringScale)
}

func testLeaderKilledDuringScale(t *testing.T, c *testutil.Cluster, rt taskRuntime) {
	leader := c.Leader(t)
	m := others(c.Managers, leader)[0]
	api := controlAPI(t, m)
	mustShoal(t, m, append([]string{"service", "create", "--name", "web", "--replicas", "3"}, rt.sleeper...)...)
	convergedNow(t, api, "web", 3, "service create")

	const want = 30
	mustShoal(t, m, "service", "scale", "--detach", "web="+strconv.Itoa(want))
	leader.Kill(t)
	if c.Leader(t) == leader {
		t.Fatalf("the killed %s is still reported as leader", leader.Name)
	}
	all := waitTasks(t, api, "web", convergeTimeout, convergedOff(want, leader.ID(t), "the killed leader "+leader.Name))
	tasks := current(all)
	for i, task := range tasks {
		if task.Slot != uint64(i+1) {
			t.Fatalf("the %d running tasks hold slots %v, want 1 to %d once each", want, slotsOf(tasks), want)
		}
	}

	// The old leader comes back: the processes of its orphaned tasks end,
	// and the 30 tasks stay as they are.
	leader.Restart(t)
	c.WaitHealthy(t)
	for _, task := range onNode(all, leader.ID(t)) {
		waitProcessGone(t, task.GetStatus().GetPid(), convergeTimeout)
	}
	sameTasks(t, "return of the old leader "+leader.Name, tasks, convergedNow(t, api, "web", want, "the orphaned tasks' processes ending"))
}

// slotsOf lists the slots of tasks.
func slotsOf(tasks []*shoalpb.Task) []uint64 {
	var out []uint64
	for _, task := range tasks {
		out = append(out, task.Slot)
	}
	return out
}
