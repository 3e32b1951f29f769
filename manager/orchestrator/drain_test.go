package orchestrator

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// drainedSince marks the node drained since t0+d with a deadline (0: none).
func drainedSince(d, deadline time.Duration) func(*shoalpb.Node) {
	return func(n *shoalpb.Node) {
		isDrained(n)
		n.DrainStartedAt = timestamppb.New(t0.Add(d))
		n.Spec.DrainDeadlineMs = deadline.Milliseconds()
	}
}

func TestDrain(t *testing.T) {
	svc := service("a", replMode, 3)
	nodes := func(n3 *shoalpb.Node) []*shoalpb.Node { return []*shoalpb.Node{node("n1"), node("n2"), n3} }
	live := func(id string, slot uint64, node string, opts ...func(*shoalpb.Task)) *shoalpb.Task {
		return task(id, svc, slot, node, running, append([]func(*shoalpb.Task){ready}, opts...)...)
	}
	onDrained := []*shoalpb.Task{live("a1", 1, "n1"), live("a2", 2, "n3"), live("a3", 3, "n3")}
	runCases(t, []reconcileCase{
		{
			name:  "one task at a time per service: the first gets a replacement and stays beside it",
			svc:   svc,
			nodes: nodes(node("n3", isDrained)),
			tasks: onDrained,
			want:  []string{"create slot 2"},
		},
		{
			name:  "the move waits for the replacement to be ready",
			svc:   svc,
			nodes: nodes(node("n3", isDrained)),
			tasks: join(onDrained, []*shoalpb.Task{task("b2", svc, 2, "n2", running)}),
			want:  nil,
		},
		{
			name:  "the drained task stops once its replacement is ready, and the next one moves",
			svc:   svc,
			nodes: nodes(node("n3", isDrained)),
			tasks: join(onDrained, []*shoalpb.Task{live("b2", 2, "n2")}),
			want:  []string{"create slot 3", "shutdown a2: node drained"},
		},
		{
			name:  "a replacement that cannot be placed lets the drained task go at once",
			svc:   svc,
			nodes: nodes(node("n3", isDrained)),
			tasks: join(onDrained, []*shoalpb.Task{task("b2", svc, 2, "", pending, msg("no suitable node (drained on 1 node)"))}),
			want:  []string{"create slot 3", "shutdown a2: node drained"},
		},
		{
			name:  "a task on the drained node that is not ready serves nothing and stops at once",
			svc:   svc,
			nodes: nodes(node("n3", isDrained)),
			tasks: []*shoalpb.Task{live("a1", 1, "n1"), task("a2", svc, 2, "n3", running), live("a3", 3, "n3")},
			want:  []string{"create slot 2", "create slot 3", "shutdown a2: node drained"},
		},
		{
			name:  "before the drain deadline the moves go on, and the plan wakes at it",
			svc:   svc,
			nodes: nodes(node("n3", drainedSince(-10*time.Second, 30*time.Second))),
			tasks: onDrained,
			want:  []string{"create slot 2", "wake +20s"},
		},
		{
			name:  "once the drain deadline passed, what is left on the node stops at once",
			svc:   svc,
			nodes: nodes(node("n3", drainedSince(-time.Minute, 30*time.Second))),
			tasks: join(onDrained, []*shoalpb.Task{task("b2", svc, 2, "n2", running)}),
			want:  []string{"create slot 3", "shutdown a2: node drained", "shutdown a3: node drained"},
		},
		{
			name:  "global services' tasks on a drained node stop at once",
			svc:   service("g", globMode, 0),
			nodes: []*shoalpb.Node{node("n1"), node("n2", isDrained)},
			tasks: []*shoalpb.Task{task("g1", service("g", globMode, 0), 0, "n1", running, ready),
				task("g2", service("g", globMode, 0), 0, "n2", running, ready)},
			want: []string{"shutdown g2: node drained"},
		},
	})
}
