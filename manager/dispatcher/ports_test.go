package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"shoal/internal/testutil"
	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

func portErr(port uint32, msg string) *shoalpb.PortError {
	return &shoalpb.PortError{Port: port, Protocol: "tcp", Error: msg}
}

// The liveness pass stores a node's reported port errors when they change,
// in the node write it makes anyway, and clears them when the node goes
// down.
func TestPortErrorsStoredOnChangeClearedWhenDown(t *testing.T) {
	store := statetest.Cluster(t, 1)[0]
	ctx, cancel := context.WithCancel(t.Context())
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	if _, err := store.Propose(ctx,
		&shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Cluster{Cluster: &shoalpb.Cluster{
			Id: "c1", Spec: &shoalpb.ClusterSpec{HeartbeatPeriodMs: 60_000}}}},
		&shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{
			Id: "n1", Role: shoalpb.NodeRole_NODE_ROLE_WORKER}}}); err != nil {
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
	var sess *session
	testutil.Eventually(t, 10*time.Second, func() (err error) {
		sess, err = d.register("n1", &shoalpb.SessionRequest{Addr: "127.0.0.11:2377",
			Description: &shoalpb.NodeDescription{Hostname: "host-n1", Runtime: "process"}})
		return err
	})
	d.kickLiveness()
	waitStatus := func(why string, cond func(st *shoalpb.NodeStatus) bool) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			var st *shoalpb.NodeStatus
			store.View(func(tx state.ReadTx) { st = tx.Node("n1").GetStatus() })
			if !cond(st) {
				return fmt.Errorf("%s: node status %v", why, st)
			}
			return nil
		})
	}
	waitStatus("ready", func(st *shoalpb.NodeStatus) bool { return st.GetState() == shoalpb.NodeState_NODE_STATE_READY })

	inUse := "port 8080/tcp is already in use on this node"
	d.recordPortErrors(sess, []*shoalpb.PortError{portErr(9090, "closed"), portErr(8080, inUse)})
	waitStatus("two errors", func(st *shoalpb.NodeStatus) bool {
		return samePortErrors(st.GetPortErrors(), []*shoalpb.PortError{portErr(8080, inUse), portErr(9090, "closed")})
	})
	d.recordPortErrors(sess, []*shoalpb.PortError{portErr(9090, "closed")})
	waitStatus("one left", func(st *shoalpb.NodeStatus) bool {
		return samePortErrors(st.GetPortErrors(), []*shoalpb.PortError{portErr(9090, "closed")})
	})

	// Heartbeats lapse: the node goes down and keeps no errors.
	sess.beat(time.Now().Add(-time.Hour))
	d.kickLiveness()
	waitStatus("down without errors", func(st *shoalpb.NodeStatus) bool {
		return st.GetState() == shoalpb.NodeState_NODE_STATE_DOWN && len(st.GetPortErrors()) == 0
	})
}

// nodeUpdate writes port errors only when they differ from the stored ones;
// a session that has not reported yet keeps them.
func TestNodeUpdatePortErrors(t *testing.T) {
	now := time.Unix(1000, 0)
	stored := []*shoalpb.PortError{portErr(8080, "in use"), portErr(9090, "in use")}
	n := &shoalpb.Node{Id: "n", Status: &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_READY, Addr: "127.0.0.2:2377", PortErrors: stored}}
	ready := func(reported []*shoalpb.PortError) verdict {
		s := &session{addr: "127.0.0.2:2377"}
		if reported != nil {
			New(Config{}).recordPortErrors(s, reported)
		}
		return verdict{state: shoalpb.NodeState_NODE_STATE_READY, sess: s}
	}
	if upd := nodeUpdate(n, ready(nil), now); upd != nil {
		t.Fatalf("no report yet: got an update %v", upd)
	}
	if upd := nodeUpdate(n, ready([]*shoalpb.PortError{stored[1], stored[0]}), now); upd != nil {
		t.Fatalf("same set in another order: got an update %v", upd)
	}
	upd := nodeUpdate(n, ready([]*shoalpb.PortError{}), now)
	if upd == nil || len(upd.Status.PortErrors) != 0 || upd.Status.State != shoalpb.NodeState_NODE_STATE_READY {
		t.Fatalf("all served again: got %v", upd)
	}
	upd = nodeUpdate(n, ready([]*shoalpb.PortError{portErr(8080, "in use")}), now)
	if upd == nil || len(upd.Status.PortErrors) != 1 || !proto.Equal(upd.Status.PortErrors[0], stored[0]) {
		t.Fatalf("one fixed: got %v", upd)
	}
	upd = nodeUpdate(n, verdict{state: shoalpb.NodeState_NODE_STATE_DOWN, message: "session ended"}, now)
	if upd == nil || len(upd.Status.PortErrors) != 0 {
		t.Fatalf("down: got %v", upd)
	}
	if len(n.Status.PortErrors) != 2 {
		t.Fatalf("nodeUpdate changed its input")
	}
}
