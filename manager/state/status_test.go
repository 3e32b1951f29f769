package state

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

func statusChange(id string, version uint64, state shoalpb.TaskState) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
		Target: &shoalpb.StoreAction_TaskStatus{TaskStatus: &shoalpb.TaskStatusChange{
			TaskId: id, Version: version,
			Status: &shoalpb.TaskStatus{State: state, Message: state.String(), Timestamp: timestamppb.New(time.Unix(1700000000+int64(version), 0))},
		}}}
}

func fsmTask(f *fsm, id string) *shoalpb.Task {
	var t *shoalpb.Task
	f.view(func(tx ReadTx) { t = tx.Task(id) })
	return t
}

// statusFixture is a service and two of its tasks, written at index 1.
func statusFixture(t *testing.T, f *fsm) {
	t.Helper()
	spec := &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "web", Command: []string{"serve"}}}
	svc := &shoalpb.Service{Id: "s1", Spec: &shoalpb.ServiceSpec{Name: "web", Task: spec}}
	created := timestamppb.New(time.Unix(1600000000, 0))
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	task := func(id string) *shoalpb.StoreAction {
		return taskAction(create, &shoalpb.Task{Id: id, ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: "n1",
			Meta: &shoalpb.Meta{CreatedAt: created, UpdatedAt: created},
			Spec: proto.Clone(spec).(*shoalpb.TaskSpec), SpecVersion: 1, DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
			Status: &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_ASSIGNED}})
	}
	if err := apply(t, f, 1, &shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Service{Service: svc}},
		task("t1"), task("t2")); err != nil {
		t.Fatal(err)
	}
}

func TestFSMTaskStatusChange(t *testing.T) {
	f := testFSM()
	statusFixture(t, f)
	events := f.events.subscribe(t.Context())
	before := fsmTask(f, "t1")
	kept := proto.Clone(before).(*shoalpb.Task)

	change := statusChange("t1", 1, shoalpb.TaskState_TASK_STATE_RUNNING)
	if err := apply(t, f, 2, change); err != nil {
		t.Fatalf("status change: %v", err)
	}
	after := fsmTask(f, "t1")
	want := proto.Clone(before).(*shoalpb.Task)
	want.Status = change.GetTaskStatus().GetStatus()
	want.Meta.Version = 2
	if !proto.Equal(after, want) {
		t.Fatalf("after the status change:\ngot  %v\nwant %v", after, want)
	}
	if after == before || after.Spec != before.Spec {
		t.Fatalf("the changed task must be a new object sharing the stored spec")
	}
	var serviceSpec *shoalpb.TaskSpec
	f.view(func(tx ReadTx) { serviceSpec = tx.Service("s1").GetSpec().GetTask() })
	if after.Spec != serviceSpec {
		t.Fatalf("the changed task no longer shares its service's spec")
	}
	if !proto.Equal(before, kept) {
		t.Fatalf("the stored task was modified in place:\ngot  %v\nwant %v", before, kept)
	}
	if ev := <-events; ev.Kind != EventUpdate || ev.Object != after || ev.Index != 2 {
		t.Fatalf("event %v %v at %d, want an update of t1 at 2", ev.Kind, ev.Object, ev.Index)
	}

	// Refusals: the store and the watchers see nothing.
	for name, c := range map[string]struct {
		action *shoalpb.StoreAction
		want   error
	}{
		"stale version": {statusChange("t1", 1, shoalpb.TaskState_TASK_STATE_FAILED), ErrVersionConflict},
		"no version":    {statusChange("t1", 0, shoalpb.TaskState_TASK_STATE_FAILED), ErrVersionConflict},
		"missing task":  {statusChange("nope", 2, shoalpb.TaskState_TASK_STATE_FAILED), ErrNotFound},
		"empty id":      {statusChange("", 2, shoalpb.TaskState_TASK_STATE_FAILED), ErrInvalidAction},
		"no status": {&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
			Target: &shoalpb.StoreAction_TaskStatus{TaskStatus: &shoalpb.TaskStatusChange{TaskId: "t1", Version: 2}}}, ErrInvalidAction},
		"nil payload": {&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
			Target: &shoalpb.StoreAction_TaskStatus{}}, ErrInvalidAction},
	} {
		if err := apply(t, f, 3, c.action); !errors.Is(err, c.want) {
			t.Fatalf("%s: got %v, want %v", name, err, c.want)
		}
	}
	for _, kind := range []shoalpb.StoreActionKind{shoalpb.StoreActionKind_STORE_ACTION_UNSPECIFIED,
		shoalpb.StoreActionKind_STORE_ACTION_CREATE, shoalpb.StoreActionKind_STORE_ACTION_DELETE} {
		a := statusChange("t1", 2, shoalpb.TaskState_TASK_STATE_FAILED)
		a.Kind = kind
		if err := apply(t, f, 3, a); !errors.Is(err, ErrInvalidAction) {
			t.Fatalf("%s of a task status: got %v, want ErrInvalidAction", kind, err)
		}
	}
	// A command is atomic with status changes in it too.
	if err := apply(t, f, 3, statusChange("t2", 1, shoalpb.TaskState_TASK_STATE_RUNNING),
		statusChange("t1", 1, shoalpb.TaskState_TASK_STATE_FAILED)); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("command with a stale status change: got %v, want ErrVersionConflict", err)
	}
	if fsmTask(f, "t1") != after || fsmTask(f, "t2").GetMeta().GetVersion() != 1 {
		t.Fatalf("refused commands changed the store: t1 %v, t2 %v", fsmTask(f, "t1"), fsmTask(f, "t2"))
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %v %v at %d", ev.Kind, ev.Object, ev.Index)
	default:
	}
}

// A status change leaves exactly the store an UPDATE carrying the stored task
// with the new status would leave: the snapshots are the same bytes.
func TestFSMTaskStatusChangeIsTheUpdate(t *testing.T) {
	compact, full := testFSM(), testFSM()
	statusFixture(t, compact)
	statusFixture(t, full)
	index := uint64(2)
	for _, s := range []shoalpb.TaskState{shoalpb.TaskState_TASK_STATE_STARTING, shoalpb.TaskState_TASK_STATE_RUNNING,
		shoalpb.TaskState_TASK_STATE_FAILED} {
		for _, id := range []string{"t1", "t2"} {
			change := statusChange(id, fsmTask(compact, id).GetMeta().GetVersion(), s)
			if err := apply(t, compact, index, change); err != nil {
				t.Fatalf("status change: %v", err)
			}
			upd := proto.Clone(fsmTask(full, id)).(*shoalpb.Task)
			upd.Status = change.GetTaskStatus().GetStatus()
			if err := apply(t, full, index, taskAction(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, upd)); err != nil {
				t.Fatalf("update: %v", err)
			}
			index++
		}
	}
	if a, b := snapshotBytes(t, compact), snapshotBytes(t, full); !bytes.Equal(a, b) {
		t.Fatalf("status changes and updates left different stores:\n%x\n%x", a, b)
	}
}

// Two managers applying the same log with status changes, refused ones
// included, reach the same store, and a snapshot of it restores to the same.
func TestFSMTaskStatusDeterminism(t *testing.T) {
	log := [][]*shoalpb.StoreAction{
		{statusChange("t1", 1, shoalpb.TaskState_TASK_STATE_RUNNING)},
		{statusChange("t1", 1, shoalpb.TaskState_TASK_STATE_FAILED)}, // refused: stale
		{statusChange("t2", 1, shoalpb.TaskState_TASK_STATE_STARTING), statusChange("t1", 2, shoalpb.TaskState_TASK_STATE_COMPLETE)},
		{statusChange("t3", 1, shoalpb.TaskState_TASK_STATE_RUNNING)}, // refused: not found
		{taskAction(shoalpb.StoreActionKind_STORE_ACTION_DELETE, &shoalpb.Task{Id: "t2"})},
		{statusChange("t2", 4, shoalpb.TaskState_TASK_STATE_RUNNING)}, // refused: deleted
	}
	a, b := testFSM(), testFSM()
	statusFixture(t, a)
	statusFixture(t, b)
	for i, actions := range log {
		data := command(t, actions...)
		ra := a.Apply(&raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: data})
		rb := b.Apply(&raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: bytes.Clone(data)})
		if (ra == nil) != (rb == nil) {
			t.Fatalf("entry %d: verdicts %v and %v", i+2, ra, rb)
		}
	}
	sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatalf("same log, different snapshots:\n%x\n%x", sa, sb)
	}
	if got := fsmTask(a, "t1"); got.GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_COMPLETE || got.GetMeta().GetVersion() != 4 {
		t.Fatalf("t1 after the log: %v", got)
	}
	restored := testFSM()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sa))); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBytes(t, restored); !bytes.Equal(got, sa) {
		t.Fatalf("snapshot after restore differs")
	}
	if err := apply(t, restored, 10, statusChange("t1", 4, shoalpb.TaskState_TASK_STATE_FAILED)); err != nil {
		t.Fatalf("status change after restore: %v", err)
	}
}

// withStatus must copy every field of Task: a field added to Task and
// forgotten there would be lost by every status report.
func TestWithStatusCopiesEveryField(t *testing.T) {
	stored := &shoalpb.Task{
		Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 3, NodeId: "n1", SpecVersion: 7, JobIteration: 2,
		Address:      "10.200.0.2/24",
		Networks:     []*shoalpb.TaskNetwork{{NetworkId: "default", Address: "10.200.0.2/24"}},
		Meta:         &shoalpb.Meta{Version: 5, CreatedAt: timestamppb.New(time.Unix(1, 0)), UpdatedAt: timestamppb.New(time.Unix(2, 0))},
		Spec:         &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "web"}},
		DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
		Status:       &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_ASSIGNED},
	}
	fields := stored.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); !stored.ProtoReflect().Has(fd) {
			t.Fatalf("the fixture leaves Task.%s unset: set it, and copy it in withStatus", fd.Name())
		}
	}
	// A field this build does not know (written by a newer one) is kept too.
	stored.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 1))

	status := &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_RUNNING, Message: "started"}
	got := withStatus(stored, status, 9)
	want := proto.Clone(stored).(*shoalpb.Task)
	want.Status = status
	want.Meta.Version = 9
	if !proto.Equal(got, want) {
		t.Fatalf("withStatus:\ngot  %v\nwant %v", got, want)
	}
	if got.Spec != stored.Spec || got.Status != status || got.Meta == stored.Meta || stored.Meta.Version != 5 {
		t.Fatalf("withStatus must share the spec, take the status and leave the stored meta alone")
	}
}

// A target this build does not know (a newer manager's) is refused, not
// skipped.
func TestFSMUnknownTargetRefused(t *testing.T) {
	f := testFSM()
	statusFixture(t, f)
	var a []byte
	a = protowire.AppendTag(a, 1, protowire.VarintType)
	a = protowire.AppendVarint(a, uint64(shoalpb.StoreActionKind_STORE_ACTION_UPDATE))
	a = protowire.AppendTag(a, 99, protowire.BytesType)
	a = protowire.AppendBytes(a, []byte{0x0a, 0x02, 't', '1'})
	data := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), a)
	resp := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
	if err, _ := resp.(error); !errors.Is(err, ErrInvalidAction) {
		t.Fatalf("action with an unknown target: got %v, want ErrInvalidAction", resp)
	}
}
