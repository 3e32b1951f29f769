package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

func testFSM() *fsm {
	log := slog.New(slog.DiscardHandler)
	return newFSM(log, newBroker(log))
}

func command(t *testing.T, actions ...*shoalpb.StoreAction) []byte {
	t.Helper()
	data, err := proto.Marshal(&shoalpb.Command{Actions: actions})
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return data
}

// apply runs one command through the FSM at index and returns its error.
func apply(t *testing.T, f *fsm, index uint64, actions ...*shoalpb.StoreAction) error {
	t.Helper()
	resp := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: command(t, actions...)})
	if resp == nil {
		return nil
	}
	err, ok := resp.(error)
	if !ok {
		t.Fatalf("Apply returned %T, want error or nil", resp)
	}
	return err
}

func fsmNode(f *fsm, id string) *shoalpb.Node {
	var n *shoalpb.Node
	f.view(func(tx ReadTx) { n = tx.Node(id) })
	return n
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	return sink.Bytes()
}

func TestFSMCreateUpdateDelete(t *testing.T) {
	f := testFSM()
	created := timestamppb.New(time.Unix(1700000000, 0))
	create := createNode("n1")
	create.GetNode().Meta = &shoalpb.Meta{CreatedAt: created}
	if err := apply(t, f, 1, create); err != nil {
		t.Fatalf("create: %v", err)
	}
	n := fsmNode(f, "n1")
	if n == nil || n.GetMeta().GetVersion() != 1 || !proto.Equal(n.GetMeta().GetCreatedAt(), created) {
		t.Fatalf("after create: %v", n)
	}
	if err := apply(t, f, 2, createNode("n1")); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: got %v, want ErrExists", err)
	}
	if err := apply(t, f, 3, createNode("")); !errors.Is(err, ErrInvalidAction) {
		t.Fatalf("create with empty id: got %v, want ErrInvalidAction", err)
	}

	upd := proto.Clone(n).(*shoalpb.Node)
	upd.Meta.CreatedAt = timestamppb.Now() // Apply must keep the stored one
	upd.Spec = &shoalpb.NodeSpec{Labels: map[string]string{"zone": "a"}}
	if err := apply(t, f, 4, updateNode(upd)); err != nil {
		t.Fatalf("update: %v", err)
	}
	n = fsmNode(f, "n1")
	if n.GetMeta().GetVersion() != 4 || n.GetSpec().GetLabels()["zone"] != "a" ||
		!proto.Equal(n.GetMeta().GetCreatedAt(), created) {
		t.Fatalf("after update: %v", n)
	}
	if err := apply(t, f, 5, updateNode(&shoalpb.Node{Id: "nope"})); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing node: got %v, want ErrNotFound", err)
	}

	if err := apply(t, f, 6, deleteNode("n1")); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if n := fsmNode(f, "n1"); n != nil {
		t.Fatalf("after delete: %v", n)
	}
	if err := apply(t, f, 7, deleteNode("n1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}
	if idx, _ := f.applied.get(); idx != 7 {
		t.Fatalf("applied index %d, want 7 (refused commands count too)", idx)
	}
}

func TestFSMVersionConflictLeavesStoreUnchanged(t *testing.T) {
	f := testFSM()
	if err := apply(t, f, 1, createNode("n1")); err != nil {
		t.Fatalf("create: %v", err)
	}
	read := proto.Clone(fsmNode(f, "n1")).(*shoalpb.Node)
	if err := apply(t, f, 2, updateNode(proto.Clone(read).(*shoalpb.Node))); err != nil {
		t.Fatalf("first update: %v", err)
	}
	before := proto.Clone(fsmNode(f, "n1"))

	stale := proto.Clone(read).(*shoalpb.Node) // still carries version 1
	stale.Role = shoalpb.NodeRole_NODE_ROLE_MANAGER
	if err := apply(t, f, 3, updateNode(stale)); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale update: got %v, want ErrVersionConflict", err)
	}
	noVersion := &shoalpb.Node{Id: "n1", Role: shoalpb.NodeRole_NODE_ROLE_MANAGER}
	if err := apply(t, f, 4, updateNode(noVersion)); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("update without version: got %v, want ErrVersionConflict", err)
	}
	if after := fsmNode(f, "n1"); !proto.Equal(after, before) {
		t.Fatalf("store changed by refused updates:\nbefore %v\nafter  %v", before, after)
	}
}

func TestFSMMultiActionAtomicity(t *testing.T) {
	f := testFSM()
	if err := apply(t, f, 1, createNode("n1")); err != nil {
		t.Fatalf("create: %v", err)
	}
	stale := &shoalpb.Node{Id: "n1", Meta: &shoalpb.Meta{Version: 99}}
	err := apply(t, f, 2, createNode("n2"), createCluster("c1"), updateNode(stale))
	if !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("batch with a stale update: got %v, want ErrVersionConflict", err)
	}
	if n := fsmNode(f, "n2"); n != nil {
		t.Fatalf("n2 created by a failed batch: %v", n)
	}
	var c *shoalpb.Cluster
	f.view(func(tx ReadTx) { c = tx.Cluster() })
	if c != nil {
		t.Fatalf("cluster created by a failed batch: %v", c)
	}

	if err := apply(t, f, 3, createNode("n2"), createCluster("c1"), deleteNode("n1")); err != nil {
		t.Fatalf("good batch: %v", err)
	}
	var nodes []*shoalpb.Node
	f.view(func(tx ReadTx) { c, nodes = tx.Cluster(), tx.Nodes() })
	if c.GetId() != "c1" || c.GetMeta().GetVersion() != 3 {
		t.Fatalf("cluster after batch: %v", c)
	}
	if len(nodes) != 1 || nodes[0].GetId() != "n2" || nodes[0].GetMeta().GetVersion() != 3 {
		t.Fatalf("nodes after batch: %v", nodes)
	}
}

// Commands raft commits together each get their own verdict: a refused one
// changes nothing, and the others apply as if it were alone.
func TestFSMApplyBatchVerdicts(t *testing.T) {
	f := testFSM()
	events := f.events.subscribe(t.Context())
	stale := &shoalpb.Node{Id: "n1", Meta: &shoalpb.Meta{Version: 99}}
	responses := f.ApplyBatch([]*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: command(t, createNode("n1"))},
		{Index: 2, Type: raft.LogCommand, Data: command(t, createNode("n2"), updateNode(stale))},
		{Index: 3, Type: raft.LogConfiguration, Data: []byte("raft's own")},
		{Index: 4, Type: raft.LogCommand, Data: command(t, createNode("n3"))},
		{Index: 5, Type: raft.LogCommand, Data: command(t, createNode("n1"))},
	})
	if len(responses) != 5 {
		t.Fatalf("%d responses for 5 entries", len(responses))
	}
	for i, want := range []error{nil, ErrVersionConflict, nil, nil, ErrExists} {
		err, _ := responses[i].(error)
		if (want == nil) != (responses[i] == nil) || !errors.Is(err, want) {
			t.Fatalf("entry %d: got %v, want %v", i+1, responses[i], want)
		}
	}
	if n := fsmNode(f, "n2"); n != nil {
		t.Fatalf("n2 created by a refused command: %v", n)
	}
	if fsmNode(f, "n1").GetMeta().GetVersion() != 1 || fsmNode(f, "n3").GetMeta().GetVersion() != 4 {
		t.Fatalf("n1 %v, n3 %v: want versions 1 and 4", fsmNode(f, "n1"), fsmNode(f, "n3"))
	}
	if idx, _ := f.applied.get(); idx != 5 {
		t.Fatalf("applied index %d, want 5", idx)
	}
	for _, want := range []uint64{1, 4} {
		if ev := <-events; ev.Kind != EventCreate || ev.Index != want {
			t.Fatalf("event %v %d, want a create at %d", ev.Kind, ev.Index, want)
		}
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %v at %d", ev.Kind, ev.Index)
	default:
	}
}

func TestFSMInvalidCommands(t *testing.T) {
	f := testFSM()
	cases := map[string][]byte{
		"garbage":     []byte{0xff, 0xff, 0xff},
		"no actions":  command(t),
		"no target":   command(t, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE}),
		"no kind":     command(t, &shoalpb.StoreAction{Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{Id: "x"}}}),
		"nil payload": command(t, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Node{}}),
	}
	index := uint64(0)
	for name, data := range cases {
		index++
		resp := f.Apply(&raft.Log{Index: index, Data: data})
		if err, _ := resp.(error); !errors.Is(err, ErrInvalidAction) {
			t.Fatalf("%s: got %v, want ErrInvalidAction", name, resp)
		}
	}
}

// history is a log with successes and refusals, touching both tables.
func history(t *testing.T) [][]byte {
	labelled := &shoalpb.Node{Id: "n2", Spec: &shoalpb.NodeSpec{Labels: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}}}
	upd := proto.Clone(labelled).(*shoalpb.Node)
	upd.Meta = &shoalpb.Meta{Version: 2}
	upd.Role = shoalpb.NodeRole_NODE_ROLE_MANAGER
	return [][]byte{
		command(t, createCluster("c1"), createNode("n1")),
		command(t, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Node{Node: labelled}}),
		command(t, createNode("n1")), // refused: exists
		command(t, updateNode(upd)),
		command(t, createNode("n3"), deleteNode("n1")),
		command(t, deleteNode("zz")), // refused: not found
	}
}

func TestFSMDeterminism(t *testing.T) {
	a, b := testFSM(), testFSM()
	for i, data := range history(t) {
		a.Apply(&raft.Log{Index: uint64(i + 1), Data: data})
		b.Apply(&raft.Log{Index: uint64(i + 1), Data: bytes.Clone(data)})
	}
	if sa, sb := snapshotBytes(t, a), snapshotBytes(t, b); !bytes.Equal(sa, sb) {
		t.Fatalf("same log, different snapshots:\n%x\n%x", sa, sb)
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	orig := testFSM()
	for i, data := range history(t) {
		orig.Apply(&raft.Log{Index: uint64(i + 1), Data: data})
	}
	data := snapshotBytes(t, orig)

	restored := testFSM()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := restored.events.subscribe(ctx)
	if err := apply(t, restored, 1, createNode("stale")); err != nil { // replaced by Restore
		t.Fatalf("create: %v", err)
	}
	if err := restored.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got := snapshotBytes(t, restored); !bytes.Equal(got, data) {
		t.Fatalf("snapshot after restore differs:\n%x\n%x", got, data)
	}
	if n := fsmNode(restored, "stale"); n != nil {
		t.Fatalf("restore kept an object not in the snapshot: %v", n)
	}
	var want, got []*shoalpb.Node
	orig.view(func(tx ReadTx) { want = tx.Nodes() })
	restored.view(func(tx ReadTx) { got = tx.Nodes() })
	if len(got) != len(want) {
		t.Fatalf("restored %d nodes, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("node %d: got %v, want %v", i, got[i], want[i])
		}
	}
	oi, _ := orig.applied.get()
	ri, _ := restored.applied.get()
	if ri != oi {
		t.Fatalf("restored applied index %d, want %d", ri, oi)
	}
	if ev := <-events; ev.Kind != EventCreate {
		t.Fatalf("first event %v, want create", ev.Kind)
	}
	if ev := <-events; ev.Kind != EventReset || ev.Index != oi || ev.Object != nil {
		t.Fatalf("second event %+v, want reset at %d", ev, oi)
	}
	if err := restored.Restore(io.NopCloser(bytes.NewReader([]byte("junk")))); err == nil {
		t.Fatalf("restore of junk succeeded")
	}
}

func TestWatchEventsAndSlowWatcher(t *testing.T) {
	f := testFSM()
	ctx, cancel := context.WithCancel(context.Background())
	fast := f.events.subscribe(ctx)
	slow := f.events.subscribe(context.Background())
	if err := apply(t, f, 1, createNode("n1"), createNode("n2")); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := apply(t, f, 2, createNode("n1")); err == nil { // refused: no event
		t.Fatalf("duplicate create succeeded")
	}
	if err := apply(t, f, 3, deleteNode("n2")); err != nil {
		t.Fatalf("delete: %v", err)
	}
	want := []struct {
		kind  EventKind
		id    string
		index uint64
	}{{EventCreate, "n1", 1}, {EventCreate, "n2", 1}, {EventDelete, "n2", 3}}
	for _, w := range want {
		ev := <-fast
		if n, _ := ev.Object.(*shoalpb.Node); ev.Kind != w.kind || n.GetId() != w.id || ev.Index != w.index {
			t.Fatalf("event %v %v at %d, want %v %s at %d", ev.Kind, ev.Object, ev.Index, w.kind, w.id, w.index)
		}
	}
	cancel()
	waitClosed(t, fast, "cancelled watcher")

	for i := 0; i < watchBuffer; i++ { // fill the slow watcher's buffer (3 events already queued)
		if err := apply(t, f, uint64(10+i), createNode(fmt.Sprintf("x%04d", i))); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	waitClosed(t, slow, "watcher past its buffer")

	f.events.close()
	if _, ok := <-f.events.subscribe(context.Background()); ok {
		t.Fatalf("watch on a closed broker is open")
	}
}

// waitClosed drains ch until it is closed.
func waitClosed(t *testing.T, ch <-chan Event, what string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("%s: channel not closed", what)
		}
	}
}
