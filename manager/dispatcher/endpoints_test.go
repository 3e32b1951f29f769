package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"shoal/internal/testutil"
	"shoal/manager/servicespec"
	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

// endpointView is what an agent makes of the Endpoints stream.
type endpointView struct {
	services map[string]*shoalpb.ServiceEndpoints
	tasks    map[string]*shoalpb.EndpointTask
	ttl      int64
}

func (v *endpointView) apply(m *shoalpb.EndpointsMessage) {
	if m.Complete || v.services == nil {
		v.services, v.tasks = map[string]*shoalpb.ServiceEndpoints{}, map[string]*shoalpb.EndpointTask{}
	}
	for _, s := range m.Services {
		v.services[s.ServiceId] = s
	}
	for _, id := range m.RemoveServices {
		delete(v.services, id)
	}
	for _, t := range m.Tasks {
		v.tasks[t.TaskId] = t
	}
	for _, id := range m.RemoveTasks {
		delete(v.tasks, id)
	}
	v.ttl = m.DnsTtlMs
}

func (v *endpointView) taskIDs() []string {
	var ids []string
	for id := range v.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestEndpointTable runs the leader loop over a real store and reads the
// endpoint stream's messages as an agent would: only tasks that are desired
// RUNNING, RUNNING, ready, addressed and on a node that is not down are
// endpoints; each change reaches the stream as a change, not a new set.
func TestEndpointTable(t *testing.T) {
	store := statetest.Cluster(t, 1)[0]
	ctx, cancel := context.WithCancel(t.Context())
	create, update := shoalpb.StoreActionKind_STORE_ACTION_CREATE, shoalpb.StoreActionKind_STORE_ACTION_UPDATE
	running := shoalpb.TaskState_TASK_STATE_RUNNING
	task := func(id, node string, ready bool) *shoalpb.Task {
		return &shoalpb.Task{Id: id, ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: node, Address: "10.200.0.9/24",
			DesiredState: running, Status: &shoalpb.TaskStatus{State: running, Ready: ready}}
	}
	actions := []*shoalpb.StoreAction{
		{Kind: create, Target: &shoalpb.StoreAction_Cluster{Cluster: &shoalpb.Cluster{Id: "c1", Spec: &shoalpb.ClusterSpec{HeartbeatPeriodMs: 60_000}}}},
		{Kind: create, Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{Id: "n1"}}},
		{Kind: create, Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{Id: "n2"}}},
		{Kind: create, Target: &shoalpb.StoreAction_Service{Service: &shoalpb.Service{Id: "s1",
			Spec:     &shoalpb.ServiceSpec{Name: "web", Labels: map[string]string{servicespec.StackLabel: "shop"}},
			Endpoint: &shoalpb.ServiceEndpoint{Vip: "10.201.0.1"}}}},
		{Kind: create, Target: &shoalpb.StoreAction_Task{Task: task("t1", "n1", true)}},
		{Kind: create, Target: &shoalpb.StoreAction_Task{Task: task("t2", "n2", true)}},
		{Kind: create, Target: &shoalpb.StoreAction_Task{Task: task("t3", "n2", false)}},
	}
	if _, err := store.Propose(ctx, actions...); err != nil {
		t.Fatal(err)
	}
	d := New(Config{Store: store, Cluster: quietCluster{}, Logger: slog.New(slog.DiscardHandler), Tick: time.Hour})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	q := d.endpoints.subscribe()
	var view endpointView
	var last *shoalpb.EndpointsMessage
	expect := func(what string, want ...string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			if m := d.endpoints.next(q, view.ttl); m != nil {
				view.apply(m)
				last = m
			}
			if got := view.taskIDs(); !slices.Equal(got, want) {
				return fmt.Errorf("%s: endpoints %v, want %v", what, got, want)
			}
			return nil
		})
	}
	change := func(kind shoalpb.StoreActionKind, obj proto.Message) {
		t.Helper()
		var a *shoalpb.StoreAction
		switch o := obj.(type) {
		case *shoalpb.Task:
			a = &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Task{Task: o}}
		case *shoalpb.Node:
			a = &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Node{Node: o}}
		case *shoalpb.Service:
			a = &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Service{Service: o}}
		case *shoalpb.Cluster:
			a = &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Cluster{Cluster: o}}
		}
		if _, err := store.Propose(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(get func(tx state.ReadTx) proto.Message) proto.Message {
		var m proto.Message
		store.View(func(tx state.ReadTx) { m = proto.Clone(get(tx)) })
		return m
	}
	taskNow := func(id string) *shoalpb.Task {
		return stored(func(tx state.ReadTx) proto.Message { return tx.Task(id) }).(*shoalpb.Task)
	}

	expect("the ready tasks in the complete set", "t1", "t2")
	if !last.Complete || view.ttl != DefaultDNSTTLMs {
		t.Fatalf("first message complete=%v ttl=%d, want the complete set with the default TTL", last.Complete, view.ttl)
	}
	se := view.services["s1"]
	if se.GetVip() != "10.201.0.1" || se.GetStack() != "shop" || se.GetName() != "web" {
		t.Fatalf("service endpoints %v", se)
	}
	if et := view.tasks["t1"]; et.GetAddress() != "10.200.0.9" || et.GetName() != "web.1.t1" || et.GetNodeId() != "n1" {
		t.Fatalf("task endpoint %v: want the address without prefix and the task's name", et)
	}

	t3 := taskNow("t3")
	t3.Status.Ready = true
	change(update, t3)
	expect("a task that becomes ready", "t1", "t2", "t3")
	if last.Complete || len(last.Tasks) != 1 {
		t.Fatalf("change sent as %v, want one added task", last)
	}
	t3 = taskNow("t3")
	t3.DesiredState = shoalpb.TaskState_TASK_STATE_SHUTDOWN
	change(update, t3)
	expect("a task about to be stopped", "t1", "t2")
	t2 := taskNow("t2")
	t2.Status.Ready = false
	change(update, t2)
	expect("a task no longer ready", "t1")
	t2 = taskNow("t2")
	t2.Status.Ready = true
	change(update, t2)
	expect("a task ready again", "t1", "t2")

	n2 := stored(func(tx state.ReadTx) proto.Message { return tx.Node("n2") }).(*shoalpb.Node)
	n2.Status = &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_DOWN}
	change(update, n2)
	expect("the tasks of a node that is down", "t1")
	n2 = stored(func(tx state.ReadTx) proto.Message { return tx.Node("n2") }).(*shoalpb.Node)
	n2.Status = &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_READY}
	change(update, n2)
	expect("the node back", "t1", "t2")

	c := stored(func(tx state.ReadTx) proto.Message { return tx.Cluster() }).(*shoalpb.Cluster)
	c.Spec.DnsTtlMs = -1
	change(update, c)
	testutil.Eventually(t, 10*time.Second, func() error {
		if m := d.endpoints.next(q, view.ttl); m != nil {
			view.apply(m)
		}
		if view.ttl != -1 {
			return fmt.Errorf("TTL %d, want -1", view.ttl)
		}
		return nil
	})

	svc := stored(func(tx state.ReadTx) proto.Message { return tx.Service("s1") }).(*shoalpb.Service)
	change(shoalpb.StoreActionKind_STORE_ACTION_DELETE, svc)
	expect("no task of a removed service")
	if len(view.services) != 0 {
		t.Fatalf("services after removal: %v", view.services)
	}
}
