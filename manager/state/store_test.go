package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

func TestSingleNodeProposeViewWatchReopen(t *testing.T) {
	c := newTestCluster(t, nil)
	n := c.add("m1", true)
	if ok, err := HasState(t.TempDir()); err != nil || ok {
		t.Fatalf("HasState(empty dir) = %v, %v", ok, err)
	}
	select {
	case v := <-n.s().LeaderChanges():
		if !v {
			t.Fatalf("first leadership change is %v, want true", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no leadership change")
	}
	c.leader()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := n.s().Watch(ctx)

	i1, err := n.s().Propose(ctx, createCluster("c1"), createNode("n1"))
	if err != nil {
		t.Fatalf("propose create: %v", err)
	}
	if _, err := n.s().Propose(ctx, createNode("n1")); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: got %v, want ErrExists", err)
	}
	read := proto.Clone(nodeOf(n.s(), "n1")).(*shoalpb.Node)
	if read.GetMeta().GetVersion() != i1 {
		t.Fatalf("node version %d, want the propose index %d", read.GetMeta().GetVersion(), i1)
	}
	read.Role = shoalpb.NodeRole_NODE_ROLE_MANAGER
	i2, err := n.s().Propose(ctx, updateNode(read))
	if err != nil {
		t.Fatalf("propose update: %v", err)
	}
	if _, err := n.s().Propose(ctx, updateNode(read)); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale update: got %v, want ErrVersionConflict", err)
	}
	i3, err := n.s().Propose(ctx, createNode("n2"))
	if err != nil {
		t.Fatalf("propose n2: %v", err)
	}
	i4, err := n.s().Propose(ctx, deleteNode("n2"))
	if err != nil {
		t.Fatalf("propose delete: %v", err)
	}
	if !(i1 < i2 && i2 < i3 && i3 < i4) || n.s().AppliedIndex() < i4 {
		t.Fatalf("indexes %d %d %d %d, applied %d", i1, i2, i3, i4, n.s().AppliedIndex())
	}

	want := []struct {
		kind  EventKind
		id    string
		index uint64
	}{
		{EventCreate, "c1", i1}, {EventCreate, "n1", i1}, {EventUpdate, "n1", i2},
		{EventCreate, "n2", i3}, {EventDelete, "n2", i4},
	}
	for _, w := range want {
		var ev Event
		select {
		case ev = <-events:
		case <-ctx.Done():
			t.Fatalf("waiting for %v %s: %v", w.kind, w.id, ctx.Err())
		}
		id := ""
		switch o := ev.Object.(type) {
		case *shoalpb.Node:
			id = o.GetId()
		case *shoalpb.Cluster:
			id = o.GetId()
		}
		if ev.Kind != w.kind || id != w.id || ev.Index != w.index {
			t.Fatalf("event %v %s at %d, want %v %s at %d", ev.Kind, id, ev.Index, w.kind, w.id, w.index)
		}
	}

	stats := n.s().Stats()
	if stats["state"] != "Leader" || stats["store_applied_index"] == "" {
		t.Fatalf("stats: %v", stats)
	}
	n.close(t)
	select {
	case v := <-n.s().LeaderChanges():
		if v {
			t.Fatalf("leadership change after close is %v, want false", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no loss of leadership reported by Close")
	}
	if err := n.s().Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, ok := <-events; ok {
		t.Fatalf("watch channel open after close")
	}
	if _, err := n.s().Propose(ctx, createNode("n3")); !errors.Is(err, ErrClosed) {
		t.Fatalf("propose after close: got %v, want ErrClosed", err)
	}
	if ok, err := HasState(n.dir); err != nil || !ok {
		t.Fatalf("HasState(used dir) = %v, %v", ok, err)
	}

	c.open(n, func(cfg *Config) { cfg.Bootstrap = true }) // ignored: the dir holds state
	c.leader()
	if err := n.s().Barrier(ctx); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	got := nodeOf(n.s(), "n1")
	if got.GetRole() != shoalpb.NodeRole_NODE_ROLE_MANAGER || got.GetMeta().GetVersion() != i2 || nodeOf(n.s(), "n2") != nil {
		t.Fatalf("after reopen: n1 %v, n2 %v", got, nodeOf(n.s(), "n2"))
	}
	var cl *shoalpb.Cluster
	n.s().View(func(tx ReadTx) { cl = tx.Cluster() })
	if cl.GetId() != "c1" {
		t.Fatalf("cluster after reopen: %v", cl)
	}
	if _, err := n.s().Propose(ctx, createNode("n3")); err != nil {
		t.Fatalf("propose after reopen: %v", err)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	if _, err := Open(Config{Dir: t.TempDir()}); err == nil {
		t.Fatalf("Open without NodeID succeeded")
	}
	ln := mustListen(t)
	_, err := Open(Config{
		NodeID: "m1", Dir: t.TempDir(), Addr: ln.Addr().String(), StreamLayer: tcpLayer{ln},
		ForceNewCluster: true, Logger: testLogger(t),
	})
	if err == nil {
		t.Fatalf("ForceNewCluster on an empty dir succeeded")
	}
}

func TestRemoveServer(t *testing.T) {
	c := newTestCluster(t, nil)
	m1 := c.add("m1", true)
	c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m1.s().RemoveServer(ctx, "m1"); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("removing the last voter: got %v, want ErrLastVoter", err)
	}
	if err := m1.s().RemoveServer(ctx, "unknown"); err != nil {
		t.Fatalf("removing a non-member: %v", err)
	}
	m2 := c.join("m2")
	if err := m1.s().AddVoter(ctx, m2.id, m2.addr); err != nil {
		t.Fatalf("AddVoter again: %v", err)
	}
	waitFor(t, 10*time.Second, "m2 to follow m1", func() bool { id, _ := m2.s().Leader(); return id == "m1" })
	if err := m2.s().RemoveServer(ctx, "m1"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("RemoveServer on a follower: got %v, want ErrNotLeader", err)
	}
	if err := m2.s().AddVoter(ctx, "m3", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a follower: got %v, want ErrNotLeader", err)
	}
	// Two voters on a loaded machine: m1 may step down for a moment when a
	// heartbeat to m2 is late, and refuses until it leads again.
	waitFor(t, 20*time.Second, "m1 to remove m2", func() bool {
		err := m1.s().RemoveServer(context.Background(), "m2")
		if err != nil && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("remove m2: %v", err)
		}
		return err == nil
	})
	members, err := m1.s().Members()
	if err != nil || len(members) != 1 || members[0] != (Member{ID: "m1", Addr: m1.addr, Voter: true}) {
		t.Fatalf("members after removal: %v, %v", members, err)
	}
}
