package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"shoal/internal/testutil"
	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

type quietCluster struct{}

func (quietCluster) LeaderAPIAddr() string            { return "" }
func (quietCluster) Managers() []*shoalpb.ManagerAddr { return nil }
func (quietCluster) GossipDead(nodeID string) bool    { return false }
func peerIDs(peers []*shoalpb.NodeSubnet) (ids []string) {
	for _, p := range peers {
		ids = append(ids, p.NodeId+"="+p.Subnet+"@"+p.Ip)
	}
	return ids
}

// TestNodeSubnetsAndPeers runs the dispatcher's leader loop over a real
// store with sessions registered as the Session RPC does: containerd nodes
// get subnets of the pool in the write that makes them ready, process nodes
// none; an exhausted pool is named in the node's status; a removed node's
// subnet goes to the next node; and every session message lists the other
// nodes' subnets, pushed again to every session when one changes.
func TestNodeSubnetsAndPeers(t *testing.T) {
	store := statetest.Cluster(t, 1)[0]
	ctx, cancel := context.WithCancel(t.Context())
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	actions := []*shoalpb.StoreAction{{Kind: create, Target: &shoalpb.StoreAction_Cluster{Cluster: &shoalpb.Cluster{
		Id: "c1", Spec: &shoalpb.ClusterSpec{TaskPool: "10.77.0.0/23", NodeSubnetBits: 24, HeartbeatPeriodMs: 60_000}}}}}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		actions = append(actions, &shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{
			Id: id, Role: shoalpb.NodeRole_NODE_ROLE_WORKER}}})
	}
	if _, err := store.Propose(ctx, actions...); err != nil {
		t.Fatal(err)
	}
	d := New(Config{Store: store, Cluster: quietCluster{}, Logger: slog.New(slog.DiscardHandler), Tick: 20 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	open := func(id, runtime, addr string) *session {
		t.Helper()
		var sess *session
		testutil.Eventually(t, 10*time.Second, func() (err error) {
			sess, err = d.register(id, &shoalpb.SessionRequest{Addr: addr,
				Description: &shoalpb.NodeDescription{Hostname: "host-" + id, Runtime: runtime}})
			return err
		})
		d.kickLiveness()
		return sess
	}
	node := func(id string) (n *shoalpb.Node) {
		store.View(func(tx state.ReadTx) { n = tx.Node(id) })
		return n
	}
	waitNode := func(id string, cond func(n *shoalpb.Node) error) *shoalpb.Node {
		t.Helper()
		var n *shoalpb.Node
		testutil.Eventually(t, 10*time.Second, func() error {
			n = node(id)
			if err := cond(n); err != nil {
				return fmt.Errorf("node %s: %w: %v", id, err, n)
			}
			return nil
		})
		return n
	}
	ready := func(n *shoalpb.Node) error {
		if n.GetStatus().GetState() != shoalpb.NodeState_NODE_STATE_READY {
			return errors.New("not ready")
		}
		return nil
	}
	drain := func(s *session) {
		select {
		case <-s.notify:
		default:
		}
	}
	poked := func(s *session) {
		t.Helper()
		select {
		case <-s.notify:
		case <-time.After(10 * time.Second):
			t.Fatalf("session of %s was not sent a new message", s.nodeID)
		}
	}
	message := func(s *session) *shoalpb.SessionMessage {
		t.Helper()
		msg, err := d.sessionMessage(s)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}

	s1 := open("n1", "containerd", "127.0.0.11:2377")
	n1 := waitNode("n1", func(n *shoalpb.Node) error {
		if n.GetSubnet() == "" {
			return errors.New("no subnet")
		}
		return ready(n)
	})
	s3 := open("n3", "process", "127.0.0.13:2377")
	waitNode("n3", ready)
	s2 := open("n2", "containerd", "127.0.0.12:2377")
	n2 := waitNode("n2", func(n *shoalpb.Node) error {
		if n.GetSubnet() == "" {
			return errors.New("no subnet")
		}
		return nil
	})
	if got := []string{n1.Subnet, n2.Subnet}; !slices.Equal(got, []string{"10.77.0.0/24", "10.77.1.0/24"}) {
		t.Fatalf("subnets %v, want the pool's first two /24s in order", got)
	}
	if n := node("n3"); n.GetSubnet() != "" {
		t.Fatalf("process node got subnet %s", n.Subnet)
	}

	// The pool holds two /24s: the third containerd node gets none, and
	// says why.
	s4 := open("n4", "containerd", "127.0.0.14:2377")
	const exhausted = "task pool 10.77.0.0/23 has no free /24 for node host-n4; init the cluster with a larger --task-pool"
	waitNode("n4", func(n *shoalpb.Node) error {
		if n.GetStatus().GetMessage() != exhausted || n.GetSubnet() != "" {
			return errors.New("no exhaustion message")
		}
		return ready(n)
	})

	// Every session lists the others' subnets and the pool.
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, c := range []struct {
			s    *session
			want []string
		}{
			{s1, []string{"n2=10.77.1.0/24@127.0.0.12"}},
			{s2, []string{"n1=10.77.0.0/24@127.0.0.11"}},
			{s3, []string{"n1=10.77.0.0/24@127.0.0.11", "n2=10.77.1.0/24@127.0.0.12"}},
			{s4, []string{"n1=10.77.0.0/24@127.0.0.11", "n2=10.77.1.0/24@127.0.0.12"}},
		} {
			msg := message(c.s)
			if got := peerIDs(msg.Peers); !slices.Equal(got, c.want) {
				return fmt.Errorf("peers of %s: %v, want %v", c.s.nodeID, got, c.want)
			}
			if msg.TaskPool != "10.77.0.0/23" {
				return fmt.Errorf("task pool of %s: %q", c.s.nodeID, msg.TaskPool)
			}
		}
		return nil
	})
	if msg := message(s1); msg.Node.GetSubnet() != "10.77.0.0/24" {
		t.Fatalf("n1's own subnet in its message: %q", msg.Node.GetSubnet())
	}

	// A change of n2's address reaches every session, not only n2's.
	drain(s1)
	drain(s3)
	upd := proto.Clone(node("n2")).(*shoalpb.Node)
	upd.Status.Addr = "127.0.0.22:2377"
	d.mu.Lock()
	s2.addr = upd.Status.Addr // the session would otherwise write its address back
	d.mu.Unlock()
	if _, err := store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
		Target: &shoalpb.StoreAction_Node{Node: upd}}); err != nil {
		t.Fatal(err)
	}
	poked(s1)
	poked(s3)
	if got := peerIDs(message(s3).Peers); !slices.Equal(got, []string{"n1=10.77.0.0/24@127.0.0.11", "n2=10.77.1.0/24@127.0.0.22"}) {
		t.Fatalf("peers of n3 after n2 moved: %v", got)
	}

	// n2 is removed: its subnet goes to n4, whose message clears, and the
	// sessions are told.
	drain(s1)
	if _, err := store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_DELETE,
		Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{Id: "n2"}}}); err != nil {
		t.Fatal(err)
	}
	waitNode("n4", func(n *shoalpb.Node) error {
		if n.GetSubnet() != "10.77.1.0/24" || n.GetStatus().GetMessage() != "" {
			return errors.New("not given n2's subnet")
		}
		return nil
	})
	poked(s1)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := peerIDs(message(s1).Peers); !slices.Equal(got, []string{"n4=10.77.1.0/24@127.0.0.14"}) {
			return fmt.Errorf("peers of n1 after n2's removal: %v", got)
		}
		return nil
	})

	// A network is made: every session is told, and its message lists the
	// default network first, then the new one.
	drain(s1)
	drain(s3)
	if _, err := store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE,
		Target: &shoalpb.StoreAction_Network{Network: &shoalpb.Network{Id: "nw1", Spec: &shoalpb.NetworkSpec{Name: "back"}, Subnet: "10.64.0.0/16"}}}); err != nil {
		t.Fatal(err)
	}
	poked(s1)
	poked(s3)
	var nets []string
	for _, n := range message(s3).Networks {
		nets = append(nets, n.GetId()+"="+n.GetSubnet())
	}
	if want := []string{"default=10.77.0.0/23", "nw1=10.64.0.0/16"}; !slices.Equal(nets, want) {
		t.Fatalf("networks in n3's message: %v, want %v", nets, want)
	}
}
