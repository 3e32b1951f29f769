package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"shoal/internal/testutil"
	"shoal/manager/allocator"
	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

// subnet gives a node the containerd runtime and a task subnet.
func subnet(s string) func(*shoalpb.Node) {
	return func(n *shoalpb.Node) {
		n.Description.Runtime = allocator.ContainerdRuntime
		n.Subnet = s
	}
}

func addr(a string) func(*shoalpb.Task) { return func(t *shoalpb.Task) { t.Address = a } }

func TestPlaceWithAddresses(t *testing.T) {
	svc := service("a", replMode, 2)
	only1 := service("o", replMode, 2, constraint("node.id==n1"))
	glob := service("g", globMode, 0)
	type placed struct{ task, node, address, message string }
	for _, c := range []struct {
		name  string
		nodes []*shoalpb.Node
		tasks []*shoalpb.Task
		want  []placed
	}{
		{
			name:  "tasks on a subnet node get addresses, on a process node none",
			nodes: []*shoalpb.Node{node("n1", subnet("10.200.0.0/29")), node("n2")},
			tasks: []*shoalpb.Task{task("a1", svc, 1, "", pending), task("a2", svc, 2, "", pending)},
			want: []placed{
				{"a1", "n1", "10.200.0.2/29", "assigned to host-n1"},
				{"a2", "n2", "", "assigned to host-n2"},
			},
		},
		{
			name:  "held addresses are skipped, ended tasks' are free, orphaned tasks' are not",
			nodes: []*shoalpb.Node{node("n1", subnet("10.200.0.0/29")), node("n2")},
			tasks: []*shoalpb.Task{
				task("h2", svc, 3, "n1", running, addr("10.200.0.2/29")),
				task("h3", svc, 4, "n1", orphaned, addr("10.200.0.3/29")),
				task("h4", svc, 5, "n1", complete, addr("10.200.0.4/29")),
				task("h5", svc, 6, "n1", assigned, addr("10.200.0.5/29")),
				task("h6", svc, 7, "n1", failed, addr("10.200.0.6/29")),
				task("o1", only1, 1, "", pending), task("o2", only1, 2, "", pending),
			},
			want: []placed{
				{"o1", "n1", "10.200.0.6/29", "assigned to host-n1"},
				{"o2", "n1", "10.200.0.4/29", "assigned to host-n1"},
			},
		},
		{
			name:  "a full node leaves a task that fits nowhere else pending",
			nodes: []*shoalpb.Node{node("n1", subnet("10.200.0.0/29")), node("n2")},
			tasks: []*shoalpb.Task{
				task("h2", svc, 3, "n1", running, addr("10.200.0.2/29")),
				task("h3", svc, 4, "n1", orphaned, addr("10.200.0.3/29")),
				task("h4", svc, 5, "n1", running, addr("10.200.0.4/29")),
				task("h5", svc, 6, "n1", running, addr("10.200.0.5/29")),
				task("o1", only1, 1, "", pending),
				task("o2", only1, 2, "", pending),
			},
			want: []placed{
				{"o1", "n1", "10.200.0.6/29", "assigned to host-n1"},
				{"o2", "", "", "node host-n1 has no free task address in 10.200.0.0/29; other nodes: no suitable node (constraint node.id==n1 not met on 1 node)"},
			},
		},
		{
			name:  "a pending task's unchanged message is not written again",
			nodes: []*shoalpb.Node{node("n1", subnet("10.200.0.0/29"))},
			tasks: []*shoalpb.Task{
				task("h2", svc, 3, "n1", running, addr("10.200.0.2/29")),
				task("h3", svc, 4, "n1", running, addr("10.200.0.3/29")),
				task("h4", svc, 5, "n1", running, addr("10.200.0.4/29")),
				task("h5", svc, 6, "n1", running, addr("10.200.0.5/29")),
				task("h6", svc, 7, "n1", running, addr("10.200.0.6/29")),
				task("a1", svc, 1, "", pending, msg("node host-n1 has no free task address in 10.200.0.0/29")),
			},
		},
		{
			name:  "a task placed on a full node moves to another with room",
			nodes: []*shoalpb.Node{node("n1", subnet("10.200.0.0/29")), node("n2", subnet("10.200.1.0/29"))},
			tasks: []*shoalpb.Task{
				// Orphaned tasks hold no resources, so the scheduler sees n1 empty.
				task("h2", svc, 3, "n1", orphaned, addr("10.200.0.2/29")),
				task("h3", svc, 4, "n1", orphaned, addr("10.200.0.3/29")),
				task("h4", svc, 5, "n1", orphaned, addr("10.200.0.4/29")),
				task("h5", svc, 6, "n1", orphaned, addr("10.200.0.5/29")),
				task("h6", svc, 7, "n1", orphaned, addr("10.200.0.6/29")),
				task("x1", svc, 8, "n2", running, addr("10.200.1.2/29")),
				task("a1", svc, 1, "", pending), task("a2", svc, 2, "", pending),
			},
			want: []placed{
				{"a1", "n2", "10.200.1.3/29", "assigned to host-n2"},
				{"a2", "n2", "10.200.1.4/29", "assigned to host-n2"},
			},
		},
		{
			name:  "a global task on a full node stays pending",
			nodes: []*shoalpb.Node{node("n1", subnet("10.200.0.0/29")), node("n2")},
			tasks: []*shoalpb.Task{
				task("h2", svc, 3, "n1", running, addr("10.200.0.2/29")),
				task("h3", svc, 4, "n1", running, addr("10.200.0.3/29")),
				task("h4", svc, 5, "n1", running, addr("10.200.0.4/29")),
				task("h5", svc, 6, "n1", running, addr("10.200.0.5/29")),
				task("h6", svc, 7, "n1", running, addr("10.200.0.6/29")),
				task("g1", glob, 0, "n1", pending), task("g2", glob, 0, "n2", pending),
			},
			want: []placed{
				{"g1", "", "", "node host-n1 has no free task address in 10.200.0.0/29"},
				{"g2", "n2", "", "assigned to host-n2"},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			byNode := map[string][]*shoalpb.Task{}
			for _, x := range c.tasks {
				byNode[x.GetNodeId()] = append(byNode[x.GetNodeId()], x)
			}
			before := snapshot(c.tasks)
			var got []placed
			book := newAddressBook(func(id string) []*shoalpb.Task { return byNode[id] })
			for _, u := range placeWithAddresses(c.nodes, c.tasks, nil, t0, book) {
				node := u.NodeId
				if u.Status.State == pending {
					node = "" // a global task keeps its node while pending
				}
				got = append(got, placed{u.Id, node, u.Address, u.Status.Message})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
			for i, x := range c.tasks {
				if !proto.Equal(x, before[i]) {
					t.Fatalf("task %s was modified", x.Id)
				}
			}
		})
	}
}

// TestLoopAddresses runs the orchestrator over a real store with a
// containerd node: every placed task gets its own address of the node's
// subnet, and a second orchestrator (a new leader) reading the same store
// hands out none that a live task holds.
func TestLoopAddresses(t *testing.T) {
	s := statetest.Cluster(t, 1)[0]
	ctx := context.Background()
	worker := node("n1", subnet("10.200.5.0/24"))
	worker.Meta = nil
	svc := service("web", replMode, 20, restart(condAny, -1, 0, 0))
	svc.Meta = nil
	if _, err := s.Propose(ctx,
		&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Node{Node: worker}},
		&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Service{Service: svc}},
	); err != nil {
		t.Fatal(err)
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(ctx)
		o := New(Config{Store: s, Logger: testLogger(t, slog.LevelInfo)})
		done := make(chan error, 1)
		go func() { done <- o.Run(ctx) }()
		stopped := false
		stop = func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
		t.Cleanup(stop)
		return stop
	}
	subnetPrefix := netip.MustParsePrefix("10.200.5.0/24")
	// check waits for want runnable tasks, all assigned, and checks that
	// the tasks holding an address hold distinct ones of the subnet.
	check := func(what string, want int) []*shoalpb.Task {
		t.Helper()
		var tasks []*shoalpb.Task
		testutil.Eventually(t, loopWait, func() error {
			tasks = tasksOf(s, "web")
			n := 0
			for _, x := range tasks {
				if !isRunnable(x) {
					continue
				}
				if x.NodeId != "n1" || x.Address == "" {
					return fmt.Errorf("%s: task %s not placed with an address: %s", what, x.Id, describe(tasks))
				}
				n++
			}
			if n != want {
				return fmt.Errorf("%s: %d runnable tasks, want %d", what, n, want)
			}
			return nil
		})
		seen := map[string]string{}
		for _, x := range tasks {
			if !allocator.HoldsAddress(x) {
				continue
			}
			p, err := netip.ParsePrefix(x.Address)
			if err != nil || !subnetPrefix.Contains(p.Addr()) || p.Bits() != 24 ||
				p.Addr() == subnetPrefix.Addr() || p.Addr().String() == "10.200.5.1" || p.Addr().String() == "10.200.5.255" {
				t.Fatalf("%s: task %s has address %q, not a task address of %s", what, x.Id, x.Address, subnetPrefix)
			}
			if other, dup := seen[x.Address]; dup {
				t.Fatalf("%s: tasks %s and %s both hold %s", what, other, x.Id, x.Address)
			}
			seen[x.Address] = x.Id
		}
		return tasks
	}

	stop := run()
	tasks := check("first leader", 20)
	// Half the tasks run, a quarter fail (their addresses are released),
	// a quarter stay assigned; then the leader changes.
	for i, x := range tasks {
		switch {
		case i < 10:
			report(t, s, x.Id, running)
		case i < 15:
			report(t, s, x.Id, failed)
		}
	}
	testutil.Eventually(t, loopWait, func() error {
		n := 0
		for _, x := range tasksOf(s, "web") {
			if isRunnable(x) && x.Address != "" {
				n++
			}
		}
		if n < 20 {
			return errors.New("the failed tasks are not replaced yet")
		}
		return nil
	})
	stop()

	run()
	write(t, s, func(tx state.ReadTx) *shoalpb.Service { return tx.Service("web") },
		func(x *shoalpb.Service) { x.Spec.Replicas = 200 },
		func(x *shoalpb.Service) *shoalpb.StoreAction {
			return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Service{Service: x}}
		})
	tasks = check("second leader", 200)
	var addrs []string
	for _, x := range tasks {
		if allocator.HoldsAddress(x) {
			addrs = append(addrs, x.Address)
		}
	}
	t.Logf("%d addresses held: %s ...", len(addrs), strings.Join(addrs[:5], " "))
}

// BenchmarkPlace measures one placement pass over 1,000 nodes holding
// 99,000 running tasks, placing 1,000 new ones: Schedule alone, then with
// addresses over process-runtime nodes (no subnet: must cost the same) and
// over containerd nodes with a /24 each.
func BenchmarkPlace(b *testing.B) {
	const running, placing, nodeCount = 99_000, 1_000, 1_000
	svc := service("big", replMode, running+placing)
	build := func(withSubnets bool) ([]*shoalpb.Node, []*shoalpb.Task, map[string][]*shoalpb.Task) {
		nodes := make([]*shoalpb.Node, nodeCount)
		for i := range nodes {
			nodes[i] = node(fmt.Sprintf("n%04d", i))
			if withSubnets {
				subnet(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))(nodes[i])
			}
		}
		byNode := map[string][]*shoalpb.Task{}
		tasks := make([]*shoalpb.Task, 0, running+placing)
		for i := range running {
			n := nodes[i%nodeCount]
			x := task(fmt.Sprintf("t%06d", i), svc, uint64(i+1), n.Id, running)
			if withSubnets {
				x.Address = fmt.Sprintf("%s.%d/24", strings.TrimSuffix(n.Subnet, ".0/24"), 2+i/nodeCount)
			}
			tasks = append(tasks, x)
			byNode[n.Id] = append(byNode[n.Id], x)
		}
		for i := range placing {
			tasks = append(tasks, task(fmt.Sprintf("p%06d", i), svc, uint64(running+i+1), "", pending))
		}
		return nodes, tasks, byNode
	}
	b.Run("schedule", func(b *testing.B) {
		nodes, tasks, _ := build(false)
		b.ReportAllocs()
		for b.Loop() {
			Schedule(nodes, tasks, t0)
		}
	})
	for _, withSubnets := range []bool{false, true} {
		name := "addresses-process-nodes"
		if withSubnets {
			name = "addresses-containerd-nodes"
		}
		b.Run(name, func(b *testing.B) {
			nodes, tasks, byNode := build(withSubnets)
			// The loop keeps its book from pass to pass; the placements are
			// not written here, so each pass starts from the same book.
			book := newAddressBook(func(id string) []*shoalpb.Task { return byNode[id] })
			if withSubnets {
				for _, u := range placeWithAddresses(nodes, tasks, nil, t0, book) {
					if u.Address == "" {
						b.Fatalf("task %s placed without an address: %v", u.Id, u)
					}
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				for _, u := range placeWithAddresses(nodes, tasks, nil, t0, book) {
					if u.Address != "" { // as the store's event would
						book.observe(state.Event{Kind: state.EventDelete, Object: u})
					}
				}
			}
		})
	}
}

// The address book follows the store's events between rebuilds.
func TestAddressBookObserves(t *testing.T) {
	svc := service("a", replMode, 1)
	stored := []*shoalpb.Task{task("h1", svc, 1, "n1", running, addr("10.200.0.2/29"))}
	reads := 0
	book := newAddressBook(func(string) []*shoalpb.Task { reads++; return stored })
	take := func(id string) string {
		t.Helper()
		list, err := book.list(listKey{"n1", allocator.DefaultNetworkID}, "10.200.0.0/29")
		if err != nil {
			t.Fatal(err)
		}
		a, ok := book.take(list, id)
		if !ok {
			return list.free.ExhaustedMessage("host-n1")
		}
		return a
	}
	ev := func(kind state.EventKind, x *shoalpb.Task) { book.observe(state.Event{Kind: kind, Object: x}) }
	if got := take("t1"); got != "10.200.0.3/29" {
		t.Fatalf("first take %s", got)
	}
	// A task another leader placed, seen by its event: its address is held.
	ev(state.EventCreate, task("x1", svc, 2, "n1", assigned, addr("10.200.0.5/29")))
	// h1 ends (released), t1 is orphaned (kept).
	ev(state.EventUpdate, task("h1", svc, 1, "n1", failed, addr("10.200.0.2/29")))
	ev(state.EventUpdate, task("t1", svc, 3, "n1", orphaned, addr("10.200.0.3/29")))
	var got []string
	for _, id := range []string{"t2", "t3", "t4", "t5"} {
		got = append(got, take(id))
	}
	want := []string{"10.200.0.4/29", "10.200.0.6/29", "10.200.0.2/29", "node host-n1 has no free task address in 10.200.0.0/29"}
	if !slices.Equal(got, want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	// Deleting t2 frees its address.
	ev(state.EventDelete, &shoalpb.Task{Id: "t2", NodeId: "n1", Address: "10.200.0.4/29"})
	if got := take("t6"); got != "10.200.0.4/29" {
		t.Fatalf("after a delete: %s", got)
	}
	if reads != 1 {
		t.Fatalf("the node's tasks were read %d times, want once", reads)
	}
	// The node's subnet changes: the list is read again.
	book.observe(state.Event{Kind: state.EventUpdate, Object: node("n1", subnet("10.200.1.0/29"))})
	stored = nil
	list, err := book.list(listKey{"n1", allocator.DefaultNetworkID}, "10.200.1.0/29")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := book.take(list, "t7"); got != "10.200.1.2/29" || reads != 2 {
		t.Fatalf("after a subnet change: %s, %d reads", got, reads)
	}
}

// A task on several networks gets an address of its node's slice of each,
// the first being its primary address; a slice that is full gives back the
// addresses taken on the others; a task on a removed network is not placed.
func TestPlaceWithAddressesOnNetworks(t *testing.T) {
	pool, err := allocator.ParsePool("10.200.0.0/16", 24, allocator.FieldNames)
	if err != nil {
		t.Fatal(err)
	}
	nets := &networkSet{pool: pool, subnets: map[string]netip.Prefix{
		allocator.DefaultNetworkID: pool.Prefix,
		"back":                     netip.MustParsePrefix("10.64.0.0/16"),
		"tiny":                     netip.MustParsePrefix("10.65.0.0/21"), // /29 slices: 5 addresses
	}}
	on := func(ids ...string) func(*shoalpb.Service) {
		return func(s *shoalpb.Service) {
			for _, id := range ids {
				s.Spec.Task.Networks = append(s.Spec.Task.Networks, &shoalpb.NetworkAttachmentConfig{Target: id})
			}
		}
	}
	both := service("b", replMode, 1, on("back", allocator.DefaultNetworkID))
	tiny := service("t", replMode, 6, on("back", "tiny"))
	gone := service("g", replMode, 1, on("removed"))
	nodes := []*shoalpb.Node{node("n1", subnet("10.200.3.0/24"))}
	tasks := []*shoalpb.Task{task("b1", both, 1, "", pending), task("g1", gone, 1, "", pending)}
	for i := range 6 {
		tasks = append(tasks, task(fmt.Sprintf("t%d", i+1), tiny, uint64(i+1), "", pending))
	}
	book := newAddressBook(func(string) []*shoalpb.Task { return nil })
	got := map[string]*shoalpb.Task{}
	for _, u := range placeWithAddresses(nodes, tasks, nets, t0, book) {
		got[u.Id] = u
	}
	if b := got["b1"]; b.Address != "10.64.3.2/24" || len(b.Networks) != 2 ||
		b.Networks[0].NetworkId != "back" || b.Networks[1].NetworkId != allocator.DefaultNetworkID ||
		b.Networks[1].Address != "10.200.3.2/24" {
		t.Errorf("b1 on back and default: %v", b)
	}
	if g := got["g1"]; g.NodeId != "" || g.Status.State != pending || !strings.Contains(g.Status.Message, "network removed no longer exists") {
		t.Errorf("g1 on a removed network: %v", g)
	}
	placed := 0
	for i := range 6 {
		u := got[fmt.Sprintf("t%d", i+1)]
		if u.Status.State != pending {
			placed++
			if !strings.HasPrefix(u.Networks[1].Address, "10.65.0.") || !strings.HasSuffix(u.Networks[1].Address, "/29") {
				t.Errorf("%s on tiny: %v", u.Id, u.Networks)
			}
			continue
		}
		if !strings.Contains(u.Status.Message, "no free task address in 10.65.0.24/29") {
			t.Errorf("%s: %q", u.Id, u.Status.Message)
		}
	}
	if placed != 5 {
		t.Errorf("%d tasks placed on a /29 slice, want 5", placed)
	}
	// The sixth task's address on back was given back: b1 and the five
	// placed t tasks hold six of the slice's 253.
	list, err := book.list(listKey{"n1", "back"}, "10.64.3.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if free := list.free.Free(); free != 253-6 || len(list.holders) != 6 {
		t.Errorf("back after the placements: %d free, holders %v; want %d free and 6 holders", free, list.holders, 253-6)
	}
}
