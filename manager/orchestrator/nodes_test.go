package orchestrator

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

func TestReplicatedNodeChanges(t *testing.T) {
	svc := service("a", replMode, 2, restart(condAny, 0, 1, 0))
	two := func(n2 *shoalpb.Node) []*shoalpb.Node { return []*shoalpb.Node{node("n1"), n2} }
	tasks := []*shoalpb.Task{task("a1", svc, 1, "n1", running), task("a2", svc, 2, "n2", running)}
	runCases(t, []reconcileCase{
		{
			name:  "node down: its tasks are orphaned and their slots refilled at once",
			svc:   svc,
			nodes: two(node("n2", isDown)),
			tasks: tasks,
			want:  []string{"create slot 2", "orphan a2: node down"},
		},
		{
			name:  "node down for less than OrphanGrace (a daemon restart): nothing moves until the grace ends",
			svc:   svc,
			nodes: two(node("n2", downSince(-OrphanGrace/2))),
			tasks: tasks,
			want:  []string{"wake +1s"},
		},
		{
			name:  "node down for OrphanGrace: its tasks are orphaned",
			svc:   svc,
			nodes: two(node("n2", downSince(-OrphanGrace))),
			tasks: tasks,
			want:  []string{"create slot 2", "orphan a2: node down"},
		},
		{
			name:  "node removed: like down",
			svc:   svc,
			nodes: []*shoalpb.Node{node("n1")},
			tasks: tasks,
			want:  []string{"create slot 2", "orphan a2: node removed"},
		},
		{
			name:  "node drained: its tasks are shut down and their slots refilled at once",
			svc:   svc,
			nodes: two(node("n2", isDrained)),
			tasks: tasks,
			want:  []string{"create slot 2", "shutdown a2: node drained"},
		},
		{
			name:  "node paused: nothing moves",
			svc:   svc,
			nodes: two(node("n2", isPaused)),
			tasks: tasks,
			want:  nil,
		},
		{
			name:  "node state unknown (a new leader has not heard from it yet): nothing moves",
			svc:   svc,
			nodes: two(node("n2", isUnknown)),
			tasks: tasks,
			want:  nil,
		},
		{
			name:  "a refill is no restart attempt: max_attempts 1 still allows the next restart",
			svc:   svc,
			nodes: two(node("n2")),
			tasks: []*shoalpb.Task{
				task("a1", svc, 1, "n1", running),
				task("h1", svc, 2, "n2", orphaned, desired(shutdown), at(-2*time.Minute)),
				task("h2", svc, 2, "n1", shutdown, desired(shutdown), msg("node drained"), at(-time.Minute)),
				task("a2", svc, 2, "n2", failed, at(-10*time.Second)),
			},
			want: []string{"create slot 2", "shutdown a2"},
		},
		{
			name:  "a task shutting down on a down node is orphaned, not replaced",
			svc:   svc,
			nodes: two(node("n2", isDown)),
			tasks: join(tasks, []*shoalpb.Task{task("a3", svc, 3, "n2", running, desired(shutdown))}),
			want:  []string{"create slot 2", "orphan a2: node down", "orphan a3: node down"},
		},
		{
			name:  "a pending task has no node to lose",
			svc:   svc,
			nodes: two(node("n2", isDown)),
			tasks: []*shoalpb.Task{task("a1", svc, 1, "n1", running), task("a2", svc, 2, "", pending)},
			want:  nil,
		},
		{
			name:  "node down while scaling down: the lost slot is the one that goes",
			svc:   service("a", replMode, 1, restart(condAny, 0, 1, 0)),
			nodes: two(node("n2", isDown)),
			tasks: tasks,
			want:  []string{"orphan a2: node down"},
		},
		{
			name:  "an orphaned task's slot is refilled even when the refill failed to commit before",
			svc:   svc,
			nodes: two(node("n2", isDown)),
			tasks: []*shoalpb.Task{task("a1", svc, 1, "n1", running), task("a2", svc, 2, "n2", orphaned, desired(shutdown))},
			want:  []string{"create slot 2"},
		},
	})
}

func TestGlobal(t *testing.T) {
	svc := service("g", globMode, 0, restart(condAny, 0, 0, 0))
	eu := service("g", globMode, 0, constraint("node.labels.zone==eu"))
	v2 := service("g", globMode, 0, specVersion(2))
	runCases(t, []reconcileCase{
		{
			name: "one task per eligible node, pinned to it",
			svc:  eu,
			nodes: []*shoalpb.Node{
				node("n1", label("zone", "eu")), node("n2", label("zone", "us")), node("n3", label("zone", "eu"), isDown),
				node("n4", label("zone", "eu"), isDrained), node("n5", label("zone", "eu"), isPaused), node("n6", label("zone", "eu")),
			},
			want: []string{"create on n1", "create on n6"},
		},
		{
			name:  "a new eligible node gets a task",
			svc:   svc,
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{task("g1", svc, 0, "n1", running)},
			want:  []string{"create on n2"},
		},
		{
			name:  "down, removed and drained nodes lose their tasks; paused ones keep them",
			svc:   svc,
			nodes: []*shoalpb.Node{node("n1", isDown), node("n2", isDrained), node("n4", isPaused)},
			tasks: []*shoalpb.Task{task("g1", svc, 0, "n1", running), task("g2", svc, 0, "n2", running),
				task("g3", svc, 0, "n3", running), task("g4", svc, 0, "n4", running)},
			want: []string{"orphan g1: node down", "orphan g3: node removed", "shutdown g2: node drained"},
			// g3, on a removed node, is deleted on the next pass.
			unstable: true,
		},
		{
			name:  "a node that no longer meets the constraints loses its task",
			svc:   eu,
			nodes: []*shoalpb.Node{node("n1", label("zone", "eu")), node("n2", label("zone", "us"))},
			tasks: []*shoalpb.Task{task("g1", eu, 0, "n1", running), task("g2", eu, 0, "n2", running)},
			want:  []string{"shutdown g2"},
		},
		{
			name:  "a second task on a node is shut down",
			svc:   svc,
			nodes: []*shoalpb.Node{node("n1")},
			tasks: []*shoalpb.Task{task("g1", svc, 0, "n1", running), task("g2", svc, 0, "n1", pending)},
			want:  []string{"shutdown g2"},
		},
		{
			name:     "a failed task is restarted on its node after the delay",
			svc:      svc,
			nodes:    []*shoalpb.Node{node("n1")},
			tasks:    []*shoalpb.Task{task("g1", svc, 0, "n1", failed)},
			now:      time.Second,
			want:     []string{"wake +5s"},
			unstable: true,
		},
		{
			name:  "after the delay",
			svc:   svc,
			nodes: []*shoalpb.Node{node("n1")},
			tasks: []*shoalpb.Task{task("g1", svc, 0, "n1", failed)},
			now:   5 * time.Second,
			want:  []string{"create on n1", "shutdown g1"},
		},
		{
			name:  "a dead task on a drained node becomes history",
			svc:   svc,
			nodes: []*shoalpb.Node{node("n1", isDrained)},
			tasks: []*shoalpb.Task{task("g1", svc, 0, "n1", failed)},
			want:  []string{"shutdown g1"},
		},
		{
			name:  "a spec update rolls one node at a time",
			svc:   v2,
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{task("g1", svc, 0, "n1", running), task("g2", svc, 0, "n2", running)},
			want:  []string{"create on n1", "shutdown g1"},
		},
		{
			name:  "and waits for the replacement to run",
			svc:   v2,
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{task("h1", svc, 0, "n1", shutdown, desired(shutdown)),
				task("g1", v2, 0, "n1", assigned), task("g2", svc, 0, "n2", running)},
			want: nil,
		},
	})
}

// downSince marks the node down since t0+d.
func downSince(d time.Duration) func(*shoalpb.Node) {
	return func(n *shoalpb.Node) {
		isDown(n)
		n.Status.UpdatedAt = timestamppb.New(t0.Add(d))
	}
}
