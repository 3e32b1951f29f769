package dispatcher

import (
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

// applyStatuses writes the reports that move a task of their own node
// forward, as status changes that keep the stored spec, and watchers see
// ordinary task updates.
func TestApplyStatusesWritesStatusChanges(t *testing.T) {
	store := statetest.Cluster(t, 1)[0]
	ctx := t.Context()
	spec := &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "web"}}
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	task := func(id, node string, s shoalpb.TaskState) *shoalpb.StoreAction {
		return &shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Task{Task: &shoalpb.Task{
			Id: id, ServiceId: "s1", NodeId: node, Spec: proto.Clone(spec).(*shoalpb.TaskSpec),
			Status: &shoalpb.TaskStatus{State: s}}}}
	}
	index, err := store.Propose(ctx,
		&shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Service{Service: &shoalpb.Service{
			Id: "s1", Spec: &shoalpb.ServiceSpec{Name: "web", Task: spec}}}},
		task("t1", "n1", shoalpb.TaskState_TASK_STATE_ASSIGNED),
		task("t2", "n2", shoalpb.TaskState_TASK_STATE_ASSIGNED),
		task("t3", "n1", shoalpb.TaskState_TASK_STATE_RUNNING))
	if err != nil {
		t.Fatal(err)
	}
	var before map[string]*shoalpb.Task
	store.View(func(tx state.ReadTx) {
		before = map[string]*shoalpb.Task{"t1": tx.Task("t1"), "t2": tx.Task("t2"), "t3": tx.Task("t3")}
	})
	events := store.Watch(ctx)

	d := New(Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	report := func(id string, s shoalpb.TaskState) *shoalpb.TaskStatusUpdate {
		return &shoalpb.TaskStatusUpdate{TaskId: id, Status: &shoalpb.TaskStatus{State: s, Message: s.String()}}
	}
	batch := []*statusReport{{nodeID: "n1", updates: []*shoalpb.TaskStatusUpdate{
		report("t1", shoalpb.TaskState_TASK_STATE_RUNNING),
		report("t2", shoalpb.TaskState_TASK_STATE_RUNNING),  // not n1's task
		report("t3", shoalpb.TaskState_TASK_STATE_STARTING), // goes backwards
		report("gone", shoalpb.TaskState_TASK_STATE_RUNNING),
	}}}
	if err := d.applyStatuses(ctx, batch); err != nil {
		t.Fatalf("applyStatuses: %v", err)
	}
	store.View(func(tx state.ReadTx) {
		t1 := tx.Task("t1")
		if t1.GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_RUNNING || t1.GetMeta().GetVersion() <= index {
			t.Fatalf("t1 after its report: %v", t1)
		}
		if t1.Spec != before["t1"].Spec || t1.Spec != tx.Service("s1").GetSpec().GetTask() {
			t.Fatalf("t1 no longer shares its service's spec")
		}
		want := proto.Clone(before["t1"]).(*shoalpb.Task)
		want.Status, want.Meta.Version = t1.Status, t1.Meta.Version
		if !proto.Equal(t1, want) {
			t.Fatalf("t1 changed beyond its status:\ngot  %v\nwant %v", t1, want)
		}
		for _, id := range []string{"t2", "t3"} {
			if tx.Task(id) != before[id] {
				t.Fatalf("%s was written: %v", id, tx.Task(id))
			}
		}
	})
	ev := <-events
	if got, _ := ev.Object.(*shoalpb.Task); ev.Kind != state.EventUpdate || got.GetId() != "t1" ||
		got.GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("event %v %v, want an update of t1", ev.Kind, ev.Object)
	}
}
