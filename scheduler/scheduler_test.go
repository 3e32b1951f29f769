package scheduler

import (
	"slices"
	"testing"

	shoalpb "shoal/proto"
)

var (
	pause = availability(shoalpb.NodeAvailability_NODE_AVAILABILITY_PAUSE)
	drain = availability(shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN)
)

func TestExplanations(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*shoalpb.Node
		tasks []*shoalpb.Task // running on nodes
		task  *shoalpb.Task   // the one pending task
		want  string
	}{
		{
			name: "no nodes",
			task: mkTask("t", "s"),
			want: "no suitable node (no nodes in the cluster)",
		},
		{
			name:  "not ready, plural",
			nodes: []*shoalpb.Node{mkNode("n1", down()), mkNode("n2", down())},
			task:  mkTask("t", "s"),
			want:  "no suitable node (2 nodes not ready)",
		},
		{
			name:  "not ready, singular",
			nodes: []*shoalpb.Node{mkNode("n1", down())},
			task:  mkTask("t", "s"),
			want:  "no suitable node (1 node not ready)",
		},
		{
			name:  "pause and drain",
			nodes: []*shoalpb.Node{mkNode("n1", pause), mkNode("n2", drain)},
			task:  mkTask("t", "s"),
			want:  "no suitable node (2 nodes not active (pause or drain))",
		},
		{
			name:  "constraint",
			nodes: []*shoalpb.Node{mkNode("n1", label("zone", "us")), mkNode("n2")},
			task:  mkTask("t", "s", constraints("node.labels.zone == eu")),
			want:  "no suitable node (constraint node.labels.zone==eu not met on 2 nodes)",
		},
		{
			name:  "each failing constraint named, node counted under its first",
			nodes: []*shoalpb.Node{mkNode("n1", manager()), mkNode("n2", label("zone", "us")), mkNode("n3", manager(), label("zone", "us"))},
			task:  mkTask("t", "s", constraints("node.role!=manager", "node.labels.zone==eu")),
			want:  "no suitable node (constraint node.role!=manager not met on 2 nodes; constraint node.labels.zone==eu not met on 1 node)",
		},
		{
			name:  "insufficient cpu",
			nodes: []*shoalpb.Node{mkNode("n1", capacity(cpu, 8*gib))},
			task:  mkTask("t", "s", reserve(2*cpu, 0)),
			want:  "no suitable node (insufficient cpu on 1 node)",
		},
		{
			name:  "insufficient memory counts what tasks reserve",
			nodes: []*shoalpb.Node{mkNode("n1"), mkNode("n2", capacity(4*cpu, gib))},
			tasks: []*shoalpb.Task{mkTask("r1", "other", reserve(0, 7*gib), running("n1"))},
			task:  mkTask("t", "s", reserve(0, 2*gib)),
			want:  "no suitable node (insufficient memory on 2 nodes)",
		},
		{
			name:  "host port in use",
			nodes: []*shoalpb.Node{mkNode("n1")},
			tasks: []*shoalpb.Task{mkTask("r1", "other", publish(8080, ""), running("n1"))},
			task:  mkTask("t", "s", publish(8080, "tcp")),
			want:  "no suitable node (host port 8080/tcp in use on 1 node)",
		},
		{
			name:  "max replicas per node",
			nodes: []*shoalpb.Node{mkNode("n1"), mkNode("n2")},
			tasks: []*shoalpb.Task{
				mkTask("r1", "s", running("n1")), mkTask("r2", "s", running("n1")),
				mkTask("r3", "s", running("n2")), mkTask("r4", "s", running("n2")),
			},
			task: mkTask("t", "s", maxPerNode(2)),
			want: "no suitable node (max replicas per node (2) reached on 2 nodes)",
		},
		{
			name: "example of the design, most nodes first",
			nodes: []*shoalpb.Node{
				mkNode("n1", label("zone", "eu"), capacity(4*cpu, gib)),
				mkNode("n2", label("zone", "eu"), capacity(4*cpu, gib)),
				mkNode("n3", label("zone", "eu"), capacity(4*cpu, gib)),
				mkNode("n4", label("zone", "us")),
				mkNode("n5"),
			},
			task: mkTask("t", "s", constraints("node.labels.zone==eu"), reserve(0, 2*gib)),
			want: "no suitable node (insufficient memory on 3 nodes; constraint node.labels.zone==eu not met on 2 nodes)",
		},
		{
			name: "each node once, under the first filter",
			nodes: []*shoalpb.Node{
				mkNode("n1", down(), drain, capacity(0, 0)),
				mkNode("n2", drain, capacity(0, 0)),
				mkNode("n3", capacity(0, 0)),
			},
			task: mkTask("t", "s", reserve(cpu, gib)),
			want: "no suitable node (1 node not ready; 1 node not active (pause or drain); insufficient cpu on 1 node)",
		},
		{
			name:  "invalid constraint in the spec",
			nodes: []*shoalpb.Node{mkNode("n1")},
			task:  mkTask("t", "s", constraints("node.zone==eu")),
			want:  `no suitable node (invalid constraint "node.zone==eu": unknown key "node.zone"; use node.id, node.hostname, node.role, node.labels.<name>, node.platform.os or node.platform.arch, e.g. "node.labels.zone==eu")`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PlaceTasks(Cluster{Nodes: tc.nodes, Tasks: tc.tasks}, []*shoalpb.Task{tc.task})
			if len(got) != 1 || got[0].NodeID != "" || got[0].Explanation != tc.want || got[0].TaskID != "t" {
				t.Fatalf("got %+v\nwant explanation %q", got, tc.want)
			}
		})
	}
}

func TestScoring(t *testing.T) {
	zone := func(z string) nodeOpt { return label("zone", z) }
	tests := []struct {
		name    string
		nodes   []*shoalpb.Node
		running []*shoalpb.Task
		pending []*shoalpb.Task
		want    string // placements per node, as countsString renders them
		order   []string
	}{
		{
			name:    "spread: 6 tasks on 3 nodes",
			nodes:   []*shoalpb.Node{mkNode("n1"), mkNode("n2"), mkNode("n3")},
			pending: mkTasks("s", 6),
			want:    "n1=2 n2=2 n3=2",
		},
		{
			name:  "least loaded in all",
			nodes: []*shoalpb.Node{mkNode("n1"), mkNode("n2"), mkNode("n3")},
			running: []*shoalpb.Task{
				mkTask("o1", "other", running("n1")), mkTask("o2", "other", running("n1")),
				mkTask("o3", "other", running("n3")),
			},
			pending: mkTasks("s", 3),
			order:   []string{"n2", "n3", "n1"},
		},
		{
			name:  "fewest of the service before fewest in all",
			nodes: []*shoalpb.Node{mkNode("n1"), mkNode("n2")},
			running: []*shoalpb.Task{
				mkTask("a1", "s", running("n1")),
				mkTask("o1", "other", running("n2")), mkTask("o2", "other", running("n2")), mkTask("o3", "other", running("n2")),
			},
			pending: mkTasks("s", 1),
			order:   []string{"n2"},
		},
		{
			name:    "node ID breaks ties",
			nodes:   []*shoalpb.Node{mkNode("n3"), mkNode("n1"), mkNode("n2")},
			pending: mkTasks("s", 3),
			order:   []string{"n1", "n2", "n3"},
		},
		{
			name:    "preference: zones a/b with 1 and 3 nodes, 4 tasks",
			nodes:   []*shoalpb.Node{mkNode("a1", zone("a")), mkNode("b1", zone("b")), mkNode("b2", zone("b")), mkNode("b3", zone("b"))},
			pending: mkTasks("s", 4, spread("node.labels.zone")),
			want:    "a1=2 b1=1 b2=1",
		},
		{
			name:    "preference: a missing label is its own group",
			nodes:   []*shoalpb.Node{mkNode("a1", zone("a")), mkNode("a2", zone("a")), mkNode("b1", zone("b")), mkNode("x1"), mkNode("x2")},
			pending: mkTasks("s", 6, spread("node.labels.zone")),
			want:    "a1=1 a2=1 b1=2 x1=1 x2=1",
		},
		{
			name:    "preference: balances the tasks already running",
			nodes:   []*shoalpb.Node{mkNode("a1", zone("a")), mkNode("b1", zone("b"))},
			running: []*shoalpb.Task{mkTask("r1", "s", running("a1")), mkTask("r2", "s", running("a1"))},
			pending: mkTasks("s", 4, spread("node.labels.zone")),
			want:    "a1=1 b1=3",
		},
		{
			name:    "preference: a full zone gives way to the next",
			nodes:   []*shoalpb.Node{mkNode("a1", zone("a"), capacity(cpu, gib)), mkNode("b1", zone("b")), mkNode("b2", zone("b"))},
			pending: mkTasks("s", 4, spread("node.labels.zone"), reserve(cpu, 0)),
			want:    "a1=1 b1=2 b2=1",
		},
		{
			name: "preference: two levels",
			nodes: []*shoalpb.Node{
				mkNode("a-r1", zone("a"), label("rack", "1")), mkNode("a-r1b", zone("a"), label("rack", "1")),
				mkNode("a-r2", zone("a"), label("rack", "2")), mkNode("b-r1", zone("b"), label("rack", "1")),
			},
			pending: mkTasks("s", 4, spread("node.labels.zone", "node.labels.rack")),
			want:    "a-r1=1 a-r2=1 b-r1=2",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PlaceTasks(Cluster{Nodes: tc.nodes, Tasks: tc.running}, tc.pending)
			if len(got) != len(tc.pending) {
				t.Fatalf("%d decisions for %d tasks", len(got), len(tc.pending))
			}
			if tc.want != "" {
				if c := countsString(placements(got)); c != tc.want {
					t.Fatalf("placements %s, want %s\n%s", c, tc.want, summary(got))
				}
			}
			if tc.order != nil {
				var order []string
				for _, d := range got {
					order = append(order, d.NodeID)
				}
				if !slices.Equal(order, tc.order) {
					t.Fatalf("order %v, want %v", order, tc.order)
				}
			}
		})
	}
}

func TestBatchAccounting(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []*shoalpb.Node
		pending []*shoalpb.Task
		want    []Decision
	}{
		{
			name:  "resources consumed by earlier tasks",
			nodes: []*shoalpb.Node{mkNode("n1", capacity(cpu, 8*gib))},
			pending: []*shoalpb.Task{
				mkTask("t1", "s", reserve(cpu/2, 0)), mkTask("t2", "s", reserve(cpu/2, 0)), mkTask("t3", "s", reserve(cpu/2, 0)),
			},
			want: []Decision{{"t1", "n1", ""}, {"t2", "n1", ""}, {"t3", "", "no suitable node (insufficient cpu on 1 node)"}},
		},
		{
			name:  "resources consumed by another service of the batch",
			nodes: []*shoalpb.Node{mkNode("n1", capacity(cpu, 3*gib))},
			pending: []*shoalpb.Task{
				mkTask("a1", "a", reserve(0, 2*gib)), mkTask("b1", "b", reserve(0, 2*gib)),
			},
			want: []Decision{{"a1", "n1", ""}, {"b1", "", "no suitable node (insufficient memory on 1 node)"}},
		},
		{
			name:  "host ports consumed by earlier tasks",
			nodes: []*shoalpb.Node{mkNode("n1"), mkNode("n2")},
			pending: []*shoalpb.Task{
				mkTask("t1", "s", publish(80, "tcp")), mkTask("t2", "s", publish(80, "tcp")), mkTask("t3", "s", publish(80, "tcp")),
				mkTask("u1", "u", publish(80, "udp")), mkTask("v1", "v", publish(80, "tcp")),
			},
			want: []Decision{
				{"t1", "n1", ""}, {"t2", "n2", ""}, {"t3", "", "no suitable node (host port 80/tcp in use on 2 nodes)"},
				{"u1", "n1", ""}, {"v1", "", "no suitable node (host port 80/tcp in use on 2 nodes)"},
			},
		},
		{
			name:  "max replicas per node",
			nodes: []*shoalpb.Node{mkNode("n1"), mkNode("n2"), mkNode("n3")},
			pending: append(mkTasks("s", 4, maxPerNode(1)),
				mkTask("x", "s", maxPerNode(2))), // another spec of the same service counts them too
			want: []Decision{
				{"s-1", "n1", ""}, {"s-2", "n2", ""}, {"s-3", "n3", ""},
				{"s-4", "", "no suitable node (max replicas per node (1) reached on 3 nodes)"},
				{"x", "n1", ""},
			},
		},
		{
			name:  "global: preset node that fits, and placed before the others",
			nodes: []*shoalpb.Node{mkNode("n1", capacity(cpu, gib)), mkNode("n2", capacity(cpu, gib))},
			pending: []*shoalpb.Task{
				mkTask("r1", "r", reserve(cpu, 0)),
				mkTask("g1", "g", reserve(cpu, 0), onNode("n1")), mkTask("g2", "g", reserve(cpu, 0), onNode("n2")),
			},
			want: []Decision{
				{"r1", "", "no suitable node (insufficient cpu on 2 nodes)"},
				{"g1", "n1", ""}, {"g2", "n2", ""},
			},
		},
		{
			name:  "global: preset node explained",
			nodes: []*shoalpb.Node{mkNode("n1", capacity(cpu, gib)), mkNode("n2", drain), mkNode("n3", label("zone", "us"))},
			pending: []*shoalpb.Task{
				mkTask("g1", "g", reserve(0, 2*gib), onNode("n1")),
				mkTask("g2", "g", reserve(0, 2*gib), onNode("n2")),
				mkTask("g3", "g", reserve(0, 2*gib), onNode("gone")),
				mkTask("h3", "h", constraints("node.labels.zone==eu"), onNode("n3")),
			},
			want: []Decision{
				{"g1", "", "no suitable node (insufficient memory on 1 node)"},
				{"g2", "", "no suitable node (1 node not active (pause or drain))"},
				{"g3", "", "no suitable node (node gone not in the cluster)"},
				{"h3", "", "no suitable node (constraint node.labels.zone==eu not met on 1 node)"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PlaceTasks(Cluster{Nodes: tc.nodes}, tc.pending)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", summary(got), summary(tc.want))
			}
		})
	}
}

func TestPinnedTaskInClusterTasks(t *testing.T) {
	// The scheduler loop may pass the pending global task in Cluster.Tasks too
	// (it has a node and holds resources by the definition): it must not count
	// against itself.
	g := mkTask("g1", "g", reserve(cpu, 0), onNode("n1"))
	c := Cluster{Nodes: []*shoalpb.Node{mkNode("n1", capacity(cpu, gib))}, Tasks: []*shoalpb.Task{g}}
	got := PlaceTasks(c, []*shoalpb.Task{g})
	if want := []Decision{{"g1", "n1", ""}}; !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestIgnoredTasks(t *testing.T) {
	dead := mkTask("dead", "s", reserve(4*cpu, 0), running("n1"))
	dead.Status.State = shoalpb.TaskState_TASK_STATE_FAILED
	stopping := mkTask("stopping", "s", reserve(4*cpu, 0), running("n1"))
	stopping.DesiredState = shoalpb.TaskState_TASK_STATE_SHUTDOWN
	elsewhere := mkTask("elsewhere", "s", reserve(4*cpu, 0), running("unknown"))
	c := Cluster{Nodes: []*shoalpb.Node{mkNode("n1")}, Tasks: []*shoalpb.Task{dead, stopping, elsewhere, nil}}

	assigned := mkTask("assigned", "s", running("n1"))
	assigned.Status.State = shoalpb.TaskState_TASK_STATE_ASSIGNED
	got := PlaceTasks(c, []*shoalpb.Task{nil, assigned, mkTask("t", "s", reserve(4*cpu, 0))})
	if want := []Decision{{"t", "n1", ""}}; !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestPlaceTasksDoesNotModifyInput(t *testing.T) {
	nodes := []*shoalpb.Node{mkNode("n1"), mkNode("n2")}
	pending := mkTasks("s", 3, reserve(cpu, gib), publish(80, "tcp"))
	PlaceTasks(Cluster{Nodes: nodes}, pending)
	for _, p := range pending {
		if p.NodeId != "" || p.Status.State != shoalpb.TaskState_TASK_STATE_PENDING || p.Status.Message != "" {
			t.Fatalf("task modified: %v", p)
		}
	}
	if nodes[0].Description.NanoCpus != 4*cpu {
		t.Fatalf("node modified: %v", nodes[0])
	}
}

func TestEligible(t *testing.T) {
	spec := func(cs ...string) *shoalpb.TaskSpec {
		return &shoalpb.TaskSpec{Placement: &shoalpb.Placement{Constraints: cs}}
	}
	tests := []struct {
		name string
		node *shoalpb.Node
		spec *shoalpb.TaskSpec
		want bool
	}{
		{"ready active, no spec", mkNode("n1"), nil, true},
		{"resources are not its business", mkNode("n1", capacity(0, 0)), &shoalpb.TaskSpec{Resources: &shoalpb.Resources{Reservations: &shoalpb.ResourceSet{NanoCpus: cpu}}}, true},
		{"down", mkNode("n1", down()), nil, false},
		{"paused", mkNode("n1", pause), nil, false},
		{"drained", mkNode("n1", drain), nil, false},
		{"constraint met", mkNode("n1", label("zone", "eu")), spec("node.labels.zone==EU", "node.role==worker"), true},
		{"constraint not met", mkNode("n1", manager()), spec("node.role!=manager"), false},
		{"invalid constraint", mkNode("n1"), spec("zone==eu"), false},
		{"nil node", nil, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Eligible(tc.node, tc.spec); got != tc.want {
				t.Fatalf("Eligible = %v, want %v", got, tc.want)
			}
		})
	}
}
