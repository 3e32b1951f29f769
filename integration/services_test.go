package integration

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// taskRuntime is how the services suite runs its tasks on one runtime.
type taskRuntime struct {
	name    string
	options []testutil.Option
	// needs are the commands (and root) the runtime's cluster needs.
	needs []string
	// setup runs once the cluster is up, e.g. to load images on m.
	setup func(t *testing.T, m *testutil.Node)
	// sleeper is the image (and flags) and command of a task that runs
	// until it is stopped; its arguments follow entrypoint.
	sleeper    []string
	entrypoint []string
	// chatty prints a line, then runs until stopped; line is the end of
	// the line that task wrote, as `service logs` shows it.
	chatty []string
	line   func(task *shoalpb.Task) string
}

// taskRuntimes are the runtimes the services suite runs on.
var taskRuntimes = []taskRuntime{processRuntime, containerdRuntime}

// processRuntime runs tasks as host processes.
var processRuntime = taskRuntime{
	name:    "process",
	sleeper: sleeper,
	chatty:  []string{"busybox", "sh", "-c", `echo "hello from $$"; exec sleep 1000`},
	line:    func(task *shoalpb.Task) string { return fmt.Sprintf("| hello from %d", task.Status.Pid) },
}

// containerdRuntime runs tasks as containers on nodes that each have a
// network namespace of their own, the test program's image loaded on one.
var containerdRuntime = taskRuntime{
	name: "containerd",
	// A heartbeat period of 3 s (1 s by default): a containerd node does
	// more at start (its task network, containerd), and on a loaded 2-core
	// CI machine its restart can outlast the default 1 s + 2 s
	// (OrphanGrace) after which the leader replaces a down node's tasks.
	options: []testutil.Option{testutil.WithHosts(), testutil.WithDaemonArgs("--runtime", "containerd"), testutil.WithInitArgs("--heartbeat-period", "3s")},
	needs:   []string{"containerd", "runc", "ip", "iptables", "nsenter"},
	setup: func(t *testing.T, m *testutil.Node) {
		mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))
	},
	// Without the image's exec health check, which would load the
	// machine with six nodes' worth of probes.
	sleeper:    []string{"--no-healthcheck", testutil.AppImageName, "sleep"},
	entrypoint: []string{"/app"},
	chatty:     []string{"--no-healthcheck", testutil.AppImageName, "tick"},
	line:       func(*shoalpb.Task) string { return "| tick 0" },
}

// forEachRuntime runs body once per task runtime, as parallel subtests, each
// on a new cluster of managers and workers whose first manager ran the
// runtime's setup.
func forEachRuntime(t *testing.T, managers, workers int, body func(t *testing.T, c *testutil.Cluster, rt taskRuntime)) {
	for _, rt := range taskRuntimes {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			if len(rt.needs) > 0 {
				testutil.RequireRoot(t, rt.needs...)
			}
			c := testutil.NewCluster(t, managers, workers, rt.options...)
			if rt.setup != nil {
				rt.setup(t, c.Managers[0])
			}
			body(t, c, rt)
		})
	}
}

// Services on a healthy cluster of 3 managers and 3 workers, once per
// runtime; the subtests share the cluster, each with services of its own.
func TestServiceLifecycle(t *testing.T) {
	t.Parallel()
	forEachRuntime(t, 3, 3, func(t *testing.T, c *testutil.Cluster, rt taskRuntime) {
		m := c.Managers[1]
		api := controlAPI(t, m)
		t.Run("create scale update", func(t *testing.T) {
			t.Parallel()
			testCreateScaleUpdate(t, m, api, rt)
		})
		t.Run("task process killed", func(t *testing.T) {
			t.Parallel()
			testTaskProcessKilled(t, m, api, rt)
		})
		t.Run("reservation no node meets", func(t *testing.T) {
			t.Parallel()
			testUnsatisfiableReservation(t, m, api, rt, len(c.Nodes()))
		})
		t.Run("logs from every node", func(t *testing.T) {
			t.Parallel()
			testLogsFromEveryNode(t, m, api, rt, len(c.Nodes()))
		})
	})
}

// create waits for the tasks and shows progress; a scale keeps the tasks it
// does not remove (same IDs, same processes); an update of the task spec
// replaces every task with one that runs the new command with the new
// environment, an update of the service's labels none.
func testCreateScaleUpdate(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient, rt taskRuntime) {
	out := mustShoal(t, m, append([]string{"service", "create", "--name", "web", "--replicas", "3"}, rt.sleeper...)...)
	for _, want := range []string{"overall progress: 3 out of 3 tasks running", "verify: service converged"} {
		if !strings.Contains(out, want) {
			t.Fatalf("service create printed %q; want progress ending in %q", out, want)
		}
	}
	three := convergedNow(t, api, "web", 3, "service create")

	out = mustShoal(t, m, "service", "scale", "web=6")
	if !strings.Contains(out, "web scaled to 6") || !strings.Contains(out, "verify: service converged") {
		t.Fatalf("service scale web=6 printed %q; want %q and the convergence", out, "web scaled to 6")
	}
	six := convergedNow(t, api, "web", 6, "service scale web=6")
	sameTasks(t, "scale 3 to 6", three, six)

	mustShoal(t, m, "service", "scale", "web=2")
	two := convergedNow(t, api, "web", 2, "service scale web=2")
	tasks, err := tasksOf(api, "web")
	if err != nil {
		t.Fatal(err)
	}
	sameTasks(t, "scale 6 to 2", two, six) // the two kept are two of the six
	all := byID(tasks)
	for _, task := range six {
		if slices.ContainsFunc(two, func(k *shoalpb.Task) bool { return k.Id == task.Id }) {
			continue
		}
		if st := all[task.Id].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_SHUTDOWN {
			t.Fatalf("scale 6 to 2: removed task %s is %s (%s), want SHUTDOWN", task.Id, st.GetState(), describe(st))
		}
		if processRunning(task.Status.Pid) {
			t.Fatalf("scale 6 to 2: task %s is SHUTDOWN but its process %d still runs", task.Id, task.Status.Pid)
		}
	}

	mustShoal(t, m, "service", "update", "--env-add", "GREETING=hello", "--args", "sleep 1001", "web")
	updated := convergedNow(t, api, "web", 2, "service update")
	for _, task := range updated {
		if slices.ContainsFunc(two, func(old *shoalpb.Task) bool { return old.Id == task.Id }) {
			t.Fatalf("after the update task %s of the old spec still runs: %s", task.Id, summary(updated))
		}
		pid := task.Status.Pid
		want := append(slices.Clone(rt.entrypoint), "sleep", "1001")
		cmdline, err := procFile(pid, "cmdline")
		if err != nil || !slices.Equal(cmdline, want) {
			t.Fatalf("updated task %s: process %d runs %q (%v), want %q", task.Id, pid, cmdline, err, want)
		}
		env, err := procFile(pid, "environ")
		if err != nil || !slices.Contains(env, "GREETING=hello") {
			t.Fatalf("updated task %s: process %d has environment %q (%v), want GREETING=hello in it", task.Id, pid, env, err)
		}
	}
	for _, task := range two {
		waitProcessGone(t, task.Status.Pid, convergeTimeout)
	}

	// Neither a scale after an update nor a change of the service's own
	// labels touches the task spec: no task restarts.
	mustShoal(t, m, "service", "scale", "web=3")
	three = convergedNow(t, api, "web", 3, "service scale web=3")
	sameTasks(t, "scale 2 to 3 after an update", updated, three)
	mustShoal(t, m, "service", "update", "--label-add", "tier=front", "web")
	sameTasks(t, "update of the service's labels", three, convergedNow(t, api, "web", 3, "service update --label-add"))
}

// kill -9 of a task's process: with the default restart condition (any) a new
// task replaces it in the same slot; with --restart-condition none nothing
// does. The other slot is left alone either way.
func testTaskProcessKilled(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient, rt taskRuntime) {
	mustShoal(t, m, append([]string{"service", "create", "--name", "restarts", "--replicas", "2", "--restart-delay", "0s"}, rt.sleeper...)...)
	before := convergedNow(t, api, "restarts", 2, "service create")
	victim, other := before[0], before[1]
	killTask(t, victim)
	tasks := waitTasks(t, api, "restarts", moveTimeout, func(tasks []*shoalpb.Task) error {
		if err := converged(2)(tasks); err != nil {
			return err
		}
		next, err := taskInSlot(tasks, victim.Slot)
		if err != nil {
			return err
		}
		if next.Id == victim.Id {
			return fmt.Errorf("slot %d still holds the killed task %s", victim.Slot, victim.Id)
		}
		return nil
	})
	sameTasks(t, "after a task of another slot was killed", []*shoalpb.Task{other}, current(tasks))
	if st := byID(tasks)[victim.Id].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_FAILED || !strings.Contains(st.GetErr(), "SIGKILL") {
		t.Fatalf("the killed task %s is %s (%s), want FAILED saying it was killed by SIGKILL", victim.Id, st.GetState(), describe(st))
	}

	// No delay, so a wrong restart would come at once, in the very pass
	// that first sees the failure.
	mustShoal(t, m, append([]string{"service", "create", "--name", "once", "--replicas", "2", "--restart-condition", "none", "--restart-delay", "0s"}, rt.sleeper...)...)
	before = convergedNow(t, api, "once", 2, "service create")
	victim = before[0]
	killTask(t, victim)
	waitTasks(t, api, "once", moveTimeout, func(tasks []*shoalpb.Task) error {
		if st := byID(tasks)[victim.Id].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_FAILED {
			return fmt.Errorf("the killed task %s is %s (%s), want FAILED", victim.Id, st.GetState(), describe(st))
		}
		return nil
	})
	// The scale is written after the failure was, so the pass that fills
	// slot 3 has seen the failure and decided about the killed task's slot.
	mustShoal(t, m, "service", "scale", "--detach", "once=3")
	tasks = waitTasks(t, api, "once", convergeTimeout, func(tasks []*shoalpb.Task) error {
		task, err := taskInSlot(tasks, 3)
		if err != nil {
			return err
		}
		if task.Status.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("the task of slot 3 is %s, want RUNNING", task.Status.GetState())
		}
		return nil
	})
	for _, task := range tasks {
		if task.Slot == victim.Slot && task.Id != victim.Id {
			t.Fatalf("with --restart-condition none the killed task %s was replaced by %s: %s", victim.Id, task.Id, summary(tasks))
		}
	}
	sameTasks(t, "after a task of another slot was killed", before[1:], current(tasks))
}

// killTask sends SIGKILL to the process of a running task.
func killTask(t *testing.T, task *shoalpb.Task) {
	t.Helper()
	pid := task.Status.GetPid()
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (task %s): %v", pid, task.Id, err)
	}
}

// A reservation no node can meet: create (without --detach) fails within its
// --timeout and says why; the service exists with its task pending and
// explained in `service ps`.
func testUnsatisfiableReservation(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient, rt taskRuntime, nodes int) {
	why := fmt.Sprintf("no suitable node (insufficient memory on %d nodes)", nodes)
	_, err := m.Shoal(t, append([]string{"service", "create", "--name", "huge", "--reserve-memory", "10T", "--timeout", "5s"}, rt.sleeper...)...)
	wantError(t, "service create --reserve-memory 10T", err, "did not converge within 5s", why)

	tasks := waitTasks(t, api, "huge", convergeTimeout, func(tasks []*shoalpb.Task) error {
		if len(tasks) != 1 {
			return fmt.Errorf("the service has tasks %s, want one", summary(tasks))
		}
		if st := tasks[0].GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_PENDING || st.GetMessage() != why {
			return fmt.Errorf("its task is %s with message %q, want PENDING with %q", st.GetState(), st.GetMessage(), why)
		}
		return nil
	})
	out := mustShoal(t, m, "service", "ps", "huge")
	if !strings.Contains(out, tasks[0].Id) || !strings.Contains(out, why) {
		t.Fatalf("service ps huge printed\n%s\nwant task %s explained by %q", out, tasks[0].Id, why)
	}
}

// `service logs` merges the output of tasks on every node, each line prefixed
// with the name of the task that wrote it.
func testLogsFromEveryNode(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient, rt taskRuntime, nodes int) {
	n := strconv.Itoa(nodes)
	mustShoal(t, m, append([]string{"service", "create", "--name", "chatty", "--replicas", n, "--replicas-max-per-node", "1"}, rt.chatty...)...)
	tasks := convergedNow(t, api, "chatty", nodes, "service create")
	testutil.Eventually(t, convergeTimeout, func() error {
		out, err := m.Shoal(t, "service", "logs", "chatty")
		if err != nil {
			return err
		}
		lines := strings.Split(out, "\n")
		for _, task := range tasks {
			name := fmt.Sprintf("chatty.%d.%s", task.Slot, task.Id)
			line := rt.line(task)
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, name) && strings.HasSuffix(l, line) }) {
				return fmt.Errorf("service logs chatty printed\n%s\nno line starts with %s and ends with %q (its task on node %s)", out, name, line, task.NodeId)
			}
		}
		return nil
	})
	seen := map[string]bool{}
	for _, task := range tasks {
		seen[task.NodeId] = true
	}
	if len(seen) != nodes {
		t.Fatalf("the %d tasks of chatty (at most one per node) ran on %d nodes, want all %d: %s", nodes, len(seen), nodes, summary(tasks))
	}
}
