package orchestrator

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

func TestSchedule(t *testing.T) {
	svc := service("a", replMode, 3)
	glob := service("g", globMode, 0)
	big := service("b", replMode, 1, func(s *shoalpb.Service) {
		s.Spec.Task.Resources = &shoalpb.Resources{Reservations: &shoalpb.ResourceSet{MemoryBytes: 64 << 30}}
	})
	bigTask := func(message string) *shoalpb.Task {
		return task("b1", big, 1, "", pending, msg(message))
	}
	type placed struct{ task, node, message string }
	for _, c := range []struct {
		name  string
		nodes []*shoalpb.Node
		tasks []*shoalpb.Task
		want  []placed
	}{
		{
			name:  "pending tasks are assigned, spread",
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{task("a1", svc, 1, "", pending), task("a2", svc, 2, "", pending)},
			want: []placed{
				{"a1", "n1", "assigned to host-n1"},
				{"a2", "n2", "assigned to host-n2"},
			},
		},
		{
			name:  "tasks already on nodes count",
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{task("a1", svc, 1, "n1", running), task("a2", svc, 2, "", pending)},
			want:  []placed{{"a2", "n2", "assigned to host-n2"}},
		},
		{
			name:  "a task that fits nowhere stays pending with the explanation",
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{bigTask("pending")},
			want:  []placed{{"b1", "", "no suitable node (insufficient memory on 2 nodes)"}},
		},
		{
			name:  "an unchanged explanation is not written again",
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{bigTask("no suitable node (insufficient memory on 2 nodes)")},
			want:  nil,
		},
		{
			name:  "no nodes at all",
			tasks: []*shoalpb.Task{task("a1", svc, 1, "", pending)},
			want:  []placed{{"a1", "", "no suitable node (no nodes in the cluster)"}},
		},
		{
			name:  "a global task goes to its own node only",
			nodes: []*shoalpb.Node{node("n1"), node("n2", isPaused)},
			tasks: []*shoalpb.Task{task("g1", glob, 0, "n1", pending), task("g2", glob, 0, "n2", pending)},
			want: []placed{
				{"g1", "n1", "assigned to host-n1"},
				{"g2", "", "no suitable node (1 node not active (pause or drain))"},
			},
		},
		{
			name:  "only pending tasks desired running are scheduled",
			nodes: []*shoalpb.Node{node("n1")},
			tasks: []*shoalpb.Task{task("a1", svc, 1, "", pending, desired(shutdown)), task("a2", svc, 2, "n1", assigned)},
			want:  nil,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			inputs := snapshot(c.tasks)
			got := Schedule(c.nodes, c.tasks, t0)
			for i := range inputs {
				if !proto.Equal(inputs[i], c.tasks[i]) {
					t.Fatal("Schedule modified its input")
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d updates %v, want %d", len(got), got, len(c.want))
			}
			for i, w := range c.want {
				u := got[i]
				if u.Id != w.task || u.NodeId != w.node && w.node != "" {
					t.Fatalf("update %d: task %s on %q, want %s on %q", i, u.Id, u.NodeId, w.task, w.node)
				}
				if !strings.HasPrefix(u.Status.Message, w.message) {
					t.Fatalf("update %d (%s): message %q, want %q", i, u.Id, u.Status.Message, w.message)
				}
				wantState := assigned
				if w.node == "" {
					wantState = pending
				}
				if u.Status.State != wantState || u.Meta.GetVersion() != 9 {
					t.Fatalf("update %d (%s): state %v version %d, want %v version 9", i, u.Id, u.Status.State, u.Meta.GetVersion(), wantState)
				}
				if wantState == assigned && !u.Status.Timestamp.AsTime().Equal(t0) {
					t.Fatalf("update %d (%s): timestamp %v, want now", i, u.Id, u.Status.Timestamp.AsTime())
				}
			}
		})
	}
}
