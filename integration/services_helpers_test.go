package integration

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// Waits for services. Generous for a loaded 2-core CI machine; no test
// asserts on durations.
const (
	// convergeTimeout bounds a service's convergence after a create, scale
	// or update, and after a leader change.
	convergeTimeout = settle
	// moveTimeout bounds the replacement of tasks whose process or node
	// died: detection, OrphanGrace, scheduling and start take a few seconds.
	moveTimeout = 30 * time.Second
)

// sleeper is the image and command of a task that runs until it is stopped
// (the process runtime only records the image).
var sleeper = []string{"busybox", "sleep", "1000"}

// controlAPI is the control API on n's local socket; a test reads tasks with
// it because `service ps` shows neither slots nor PIDs.
func controlAPI(t *testing.T, n *testutil.Node) shoalpb.ControlServiceClient {
	t.Helper()
	return shoalpb.NewControlServiceClient(dialSocket(t, n))
}

// tasksOf lists every task of service, history included, as the manager
// behind api sees it.
func tasksOf(api shoalpb.ControlServiceClient, service string) ([]*shoalpb.Task, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := api.ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": service}})
	if err != nil {
		return nil, fmt.Errorf("list the tasks of %s: %w", service, err)
	}
	return resp.Tasks, nil
}

// waitTasks polls the tasks of service until check accepts them and returns
// them.
func waitTasks(t *testing.T, api shoalpb.ControlServiceClient, service string, timeout time.Duration, check func([]*shoalpb.Task) error) []*shoalpb.Task {
	t.Helper()
	var tasks []*shoalpb.Task
	testutil.Eventually(t, timeout, func() error {
		var err error
		if tasks, err = tasksOf(api, service); err != nil {
			return err
		}
		return check(tasks)
	})
	return tasks
}

// waitConverged waits until service runs exactly want tasks (see converged)
// and returns them in slot order.
func waitConverged(t *testing.T, api shoalpb.ControlServiceClient, service string, want int, timeout time.Duration) []*shoalpb.Task {
	t.Helper()
	return current(waitTasks(t, api, service, timeout, converged(want)))
}

// convergedNow returns the tasks of service in slot order after checking, at
// once, that it runs exactly want tasks (see converged): what just said so
// (a create, scale or update that waited for convergence) must be right.
func convergedNow(t *testing.T, api shoalpb.ControlServiceClient, service string, want int, what string) []*shoalpb.Task {
	t.Helper()
	tasks, err := tasksOf(api, service)
	if err == nil {
		err = converged(want)(tasks)
	}
	if err != nil {
		t.Fatalf("%s said the service converged, but: %v", what, err)
	}
	return current(tasks)
}

// current returns the tasks that hold the service's slots, in slot order:
// desired RUNNING and not dead.
func current(tasks []*shoalpb.Task) []*shoalpb.Task {
	var out []*shoalpb.Task
	for _, task := range tasks {
		if task.DesiredState == shoalpb.TaskState_TASK_STATE_RUNNING && task.GetStatus().GetState() < shoalpb.TaskState_TASK_STATE_COMPLETE {
			out = append(out, task)
		}
	}
	slices.SortFunc(out, func(a, b *shoalpb.Task) int { return cmp.Compare(a.Slot, b.Slot) })
	return out
}

// converged accepts the tasks of a replicated service that runs exactly want
// tasks, in different slots, each RUNNING with a process of its own, while no
// task it no longer wants is still running or being stopped, and no task an
// agent reported ended left its process behind.
func converged(want int) func([]*shoalpb.Task) error {
	return func(tasks []*shoalpb.Task) error {
		cur := current(tasks)
		slots := map[uint64]string{}
		pids := map[int64]string{}
		for _, task := range cur {
			st := task.GetStatus()
			switch {
			case st.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING:
				return fmt.Errorf("task %s (slot %d) is %s, want RUNNING: %s", task.Id, task.Slot, st.GetState(), describe(st))
			case !processRunning(st.GetPid()):
				return fmt.Errorf("task %s (slot %d) is RUNNING with pid %d, but no such process runs", task.Id, task.Slot, st.GetPid())
			case slots[task.Slot] != "":
				return fmt.Errorf("slot %d holds two tasks: %s and %s", task.Slot, slots[task.Slot], task.Id)
			case pids[st.GetPid()] != "":
				return fmt.Errorf("tasks %s and %s report the same process %d", pids[st.GetPid()], task.Id, st.GetPid())
			}
			slots[task.Slot], pids[st.GetPid()] = task.Id, task.Id
		}
		if len(cur) != want {
			return fmt.Errorf("%d tasks run, want %d: %s", len(cur), want, summary(tasks))
		}
		for _, task := range tasks {
			st := task.GetStatus()
			switch {
			case task.DesiredState != shoalpb.TaskState_TASK_STATE_RUNNING && task.NodeId != "" && st.GetState() < shoalpb.TaskState_TASK_STATE_COMPLETE:
				return fmt.Errorf("task %s (slot %d) is still %s with desired state %s", task.Id, task.Slot, st.GetState(), task.DesiredState)
			case st.GetState() >= shoalpb.TaskState_TASK_STATE_COMPLETE && st.GetState() != shoalpb.TaskState_TASK_STATE_ORPHANED &&
				processRunning(st.GetPid()) && processStartedBefore(st.GetPid(), st.GetTimestamp().AsTime()):
				return fmt.Errorf("task %s (slot %d) is %s, but its process %d still runs", task.Id, task.Slot, st.GetState(), st.GetPid())
			}
		}
		return nil
	}
}

// convergedOff is converged with none of the tasks on node id, which name
// (drained, killed) says why the node should have lost them.
func convergedOff(want int, id, name string) func([]*shoalpb.Task) error {
	return func(tasks []*shoalpb.Task) error {
		if on := onNode(current(tasks), id); len(on) > 0 {
			return fmt.Errorf("%s still holds %s", name, summary(on))
		}
		return converged(want)(tasks)
	}
}

// describe is a task status as a failure message shows it.
func describe(st *shoalpb.TaskStatus) string {
	text := st.GetMessage()
	if st.GetErr() != "" {
		text += " (" + st.GetErr() + ")"
	}
	return text
}

// summary lists tasks compactly for failure messages: slot:id:state/desired@node.
func summary(tasks []*shoalpb.Task) string {
	var parts []string
	for _, task := range tasks {
		parts = append(parts, fmt.Sprintf("%d:%.8s:%s/%s@%.8s", task.Slot, task.Id,
			strings.TrimPrefix(task.GetStatus().GetState().String(), "TASK_STATE_"),
			strings.TrimPrefix(task.DesiredState.String(), "TASK_STATE_"), task.NodeId))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// byID indexes tasks by ID.
func byID(tasks []*shoalpb.Task) map[string]*shoalpb.Task {
	out := map[string]*shoalpb.Task{}
	for _, task := range tasks {
		out[task.Id] = task
	}
	return out
}

// onNode returns the tasks of tasks placed on node id.
func onNode(tasks []*shoalpb.Task, id string) []*shoalpb.Task {
	var out []*shoalpb.Task
	for _, task := range tasks {
		if task.NodeId == id {
			out = append(out, task)
		}
	}
	return out
}

// sameTasks fails unless every task of some is among all with the same slot,
// node and PID: kept, not restarted.
func sameTasks(t *testing.T, what string, some, all []*shoalpb.Task) {
	t.Helper()
	index := byID(all)
	for _, s := range some {
		a := index[s.Id]
		switch {
		case a == nil:
			t.Fatalf("%s: task %s (slot %d, pid %d) is not among %s", what, s.Id, s.Slot, s.Status.GetPid(), summary(all))
		case a.Slot != s.Slot || a.NodeId != s.NodeId || a.Status.GetPid() != s.Status.GetPid():
			t.Fatalf("%s: task %s is slot %d on %s with pid %d in one list, slot %d on %s with pid %d in the other", what, s.Id,
				s.Slot, s.NodeId, s.Status.GetPid(), a.Slot, a.NodeId, a.Status.GetPid())
		}
	}
}

// processRunning reports whether a process pid exists on this machine and
// has not exited (a zombie has). The test clusters run every node here, so
// the PID a task reports can be looked up.
func processRunning(pid int64) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatInt(pid, 10) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// processStartedBefore reports whether process pid started before t: a
// process that started after a task ended is another one that got the PID
// again (pid_max is 32768 here, and a churn of containers wraps it).
func processStartedBefore(pid int64, t time.Time) bool {
	b, err := os.ReadFile("/proc/" + strconv.FormatInt(pid, 10) + "/stat")
	if err != nil {
		return false
	}
	// starttime is field 22, in clock ticks (USER_HZ, 100 on Linux) after
	// boot; fields[0] below is field 3.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 20 {
		return true
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return true
			}
			return time.Unix(boot, 0).Add(time.Duration(ticks) * 10 * time.Millisecond).Before(t)
		}
	}
	return true
}

// waitProcessGone waits until process pid has ended.
func waitProcessGone(t *testing.T, pid int64, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		if processRunning(pid) {
			return fmt.Errorf("process %d still runs", pid)
		}
		return nil
	})
}

// procFile returns /proc/PID/NAME split at NUL bytes (cmdline, environ).
func procFile(pid int64, name string) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.FormatInt(pid, 10) + "/" + name)
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// taskInSlot returns the current task of slot.
func taskInSlot(tasks []*shoalpb.Task, slot uint64) (*shoalpb.Task, error) {
	for _, task := range current(tasks) {
		if task.Slot == slot {
			return task, nil
		}
	}
	return nil, fmt.Errorf("slot %d holds no current task: %s", slot, summary(tasks))
}
