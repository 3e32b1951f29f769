package orchestrator

import (
	"slices"
	"testing"

	shoalpb "shoal/proto"
)

func TestReplicated(t *testing.T) {
	nodes := []*shoalpb.Node{node("n1"), node("n2"), node("n3")}
	s3 := service("a", replMode, 3)
	s2 := service("a", replMode, 2)
	s4 := service("a", replMode, 4)
	runCases(t, []reconcileCase{
		{
			name:  "new service fills slots 1..N",
			svc:   s3,
			nodes: nodes,
			want:  []string{"create slot 1", "create slot 2", "create slot 3"},
		},
		{
			name:  "steady state plans nothing",
			svc:   s3,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s3, 1, "n1", running), task("a2", s3, 2, "n2", running), task("a3", s3, 3, "n3", assigned)},
			want:  nil,
		},
		{
			name:  "scale up fills the lowest free slots",
			svc:   s4,
			nodes: nodes,
			tasks: join([]*shoalpb.Task{task("a1", s4, 1, "n1", running), task("a3", s4, 3, "n3", running)},
				history("h", s4, 2, "n2", 1)),
			want: []string{"create slot 2", "create slot 4"},
		},
		{
			name:  "scale down takes tasks not yet running first",
			svc:   s2,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s2, 1, "n1", running), task("a2", s2, 2, "", pending), task("a3", s2, 3, "n3", running)},
			want:  []string{"shutdown a2"},
		},
		{
			name:  "scale down takes pending before assigned",
			svc:   service("a", replMode, 1),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s2, 1, "n1", assigned), task("a2", s2, 2, "", pending), task("a3", s2, 3, "n3", running)},
			want:  []string{"shutdown a1", "shutdown a2"},
		},
		{
			name:  "scale down keeps the rest spread over nodes",
			svc:   s2,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s2, 1, "n1", running), task("a2", s2, 2, "n1", running),
				task("a3", s2, 3, "n1", running), task("a4", s2, 4, "n2", running)},
			want: []string{"shutdown a2", "shutdown a3"},
		},
		{
			name:  "scale down ties go highest slot first",
			svc:   service("a", replMode, 1),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s3, 1, "n1", running), task("a2", s3, 2, "n2", running), task("a3", s3, 3, "n3", running)},
			want:  []string{"shutdown a2", "shutdown a3"},
		},
		{
			name:  "scale to zero shuts everything down",
			svc:   service("a", replMode, 0),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s3, 1, "n1", running), task("a2", s3, 2, "", pending)},
			want:  []string{"shutdown a1", "shutdown a2"},
		},
		{
			name:  "two runnable tasks in one slot: the running one stays",
			svc:   service("a", replMode, 1),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s3, 1, "n1", assigned), task("a2", s3, 1, "n2", running)},
			want:  []string{"shutdown a1"},
		},
		{
			name:  "a task without a slot is a leftover of another mode",
			svc:   service("a", replMode, 1),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s3, 1, "n1", running), task("g1", s3, 0, "n2", running)},
			want:  []string{"shutdown g1"},
		},
		{
			name:  "tasks shutting down do not hold their slot",
			svc:   s2,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", s2, 1, "n1", running, desired(shutdown)), task("a2", s2, 2, "n2", running)},
			want:  []string{"create slot 1"},
		},
	})
}

// TestStateReconciliationExample is the example of DESIGN.md: A=3,B=2 →
// desired A=1,B=4 → A shuts down 2, B creates 2 → desired A=2,B=0 → A
// creates 1, B shuts down all 4.
func TestStateReconciliationExample(t *testing.T) {
	nodes := []*shoalpb.Node{node("n1"), node("n2"), node("n3")}
	a, b := service("A", replMode, 3), service("B", replMode, 2)
	tasks := map[string][]*shoalpb.Task{
		"A": {task("a1", a, 1, "n1", running), task("a2", a, 2, "n2", running), task("a3", a, 3, "n3", running)},
		"B": {task("b1", b, 1, "n1", running), task("b2", b, 2, "n2", running)},
	}
	newID := counter()
	step := func(name string, replicas map[string]uint64, want map[string][]string) {
		t.Helper()
		for _, svc := range []*shoalpb.Service{a, b} {
			svc.Spec.Replicas = replicas[svc.Id]
			p := Reconcile(Input{Service: svc, Tasks: tasks[svc.Id], Nodes: nodes, Now: t0, NewID: newID})
			if got := summary(p); !slices.Equal(got, want[svc.Id]) {
				t.Fatalf("%s: service %s: plan %v, want %v", name, svc.Id, got, want[svc.Id])
			}
			// The agents run what was created and stop what was shut down.
			tasks[svc.Id] = agent(applyPlan(tasks[svc.Id], p), running, func(t *shoalpb.Task) bool {
				return t.Status.State == pending && t.DesiredState == shoalpb.TaskState_TASK_STATE_RUNNING
			})
			tasks[svc.Id] = agent(tasks[svc.Id], shutdown, func(t *shoalpb.Task) bool {
				return t.DesiredState == shoalpb.TaskState_TASK_STATE_SHUTDOWN && !isDead(t)
			})
			var runnable int
			for _, t := range tasks[svc.Id] {
				if isRunnable(t) {
					runnable++
				}
			}
			if runnable != int(replicas[svc.Id]) {
				t.Fatalf("%s: service %s runs %d tasks, want %d", name, svc.Id, runnable, replicas[svc.Id])
			}
		}
	}
	step("A=1,B=4", map[string]uint64{"A": 1, "B": 4}, map[string][]string{
		"A": {"shutdown a2", "shutdown a3"},
		"B": {"create slot 3", "create slot 4"}, // new1, new2
	})
	step("A=2,B=0", map[string]uint64{"A": 2, "B": 0}, map[string][]string{
		"A": {"create slot 2"},
		"B": {"shutdown b1", "shutdown b2", "shutdown new1", "shutdown new2"},
	})
}
