package orchestrator

import (
	"testing"

	shoalpb "shoal/proto"
)

func TestRollingUpdate(t *testing.T) {
	nodes := []*shoalpb.Node{node("n1"), node("n2"), node("n3")}
	v1 := service("a", replMode, 3)
	v2 := service("a", replMode, 3, specVersion(2))
	old := func(id string, slot uint64, node string, state shoalpb.TaskState, opts ...func(*shoalpb.Task)) *shoalpb.Task {
		return task(id, v1, slot, node, state, opts...)
	}
	cur := func(id string, slot uint64, node string, state shoalpb.TaskState, opts ...func(*shoalpb.Task)) *shoalpb.Task {
		return task(id, v2, slot, node, state, opts...)
	}
	stopped := desired(shutdown)
	scaled := service("a", replMode, 4, func(s *shoalpb.Service) { s.SpecVersion = 2 })
	runCases(t, []reconcileCase{
		{
			name:  "a change that leaves the task spec alone (a scale) replaces nothing",
			svc:   scaled,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", running), old("a2", 2, "n2", running), old("a3", 3, "n3", running)},
			want:  []string{"create slot 4"},
		},
		{
			name:  "the first outdated task is replaced in its slot (stop-first)",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", running), old("a2", 2, "n2", running), old("a3", 3, "n3", running)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "while the replacement is not running, nothing else moves",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", running, stopped), cur("b1", 1, "n1", assigned),
				old("a2", 2, "n2", running), old("a3", 3, "n3", running)},
			want: nil,
		},
		{
			name:  "once it runs, the next slot goes",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", shutdown, stopped), cur("b1", 1, "n1", running),
				old("a2", 2, "n2", running), old("a3", 3, "n3", running)},
			want: []string{"create slot 2", "shutdown a2"},
		},
		{
			name:  "a failed replacement lets the rollout move on",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", shutdown, stopped), cur("b1", 1, "n1", failed),
				old("a2", 2, "n2", running), old("a3", 3, "n3", running)},
			want:     []string{"create slot 2", "shutdown a2", "wake +5s"},
			unstable: true,
		},
		{
			name:  "outdated tasks not yet running go first",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", running), old("a2", 2, "n2", running), old("a3", 3, "", pending)},
			want:  []string{"create slot 3", "shutdown a3"},
		},
		{
			name:  "new slots of a scale up come with the new spec and do not hold the rollout",
			svc:   service("a", replMode, 4, specVersion(2)),
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", running), old("a2", 2, "n2", running), old("a3", 3, "n3", running)},
			want:  []string{"create slot 1", "create slot 4", "shutdown a1"},
		},
		{
			name:  "the update is done when every live task is current",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1", shutdown, stopped), cur("b1", 1, "n1", running),
				cur("b2", 2, "n2", running), cur("b3", 3, "n3", running)},
			want: nil,
		},
	})
}

func TestUpdateConfigDefaults(t *testing.T) {
	got := updateConfigOf(service("a", replMode, 1))
	if got.parallelism != 1 || got.order != stopFirst {
		t.Fatalf("default update config %+v, want parallelism 1, stop-first", got)
	}
}
