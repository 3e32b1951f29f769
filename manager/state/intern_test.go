package state

import (
	"testing"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

func TestTasksShareTheirServiceSpec(t *testing.T) {
	f := testFSM()
	spec := &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "web", Command: []string{"serve"}}}
	svc := &shoalpb.Service{Id: "s1", Spec: &shoalpb.ServiceSpec{Name: "web", Task: spec}}
	other := proto.Clone(spec).(*shoalpb.TaskSpec)
	other.Container.Image = "web:v2"
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	if err := apply(t, f, 1,
		&shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Service{Service: svc}},
		taskAction(create, &shoalpb.Task{Id: "t1", ServiceId: "s1", Spec: proto.Clone(spec).(*shoalpb.TaskSpec)}),
		taskAction(create, &shoalpb.Task{Id: "t2", ServiceId: "s1", Spec: other}),
	); err != nil {
		t.Fatal(err)
	}
	f.view(func(tx ReadTx) {
		want := tx.Service("s1").GetSpec().GetTask()
		if got := tx.Task("t1").GetSpec(); got != want {
			t.Fatalf("t1 was made from the service's spec but holds a copy of its own")
		}
		t2 := tx.Task("t2")
		if t2.GetSpec() == want || t2.GetSpec().GetContainer().GetImage() != "web:v2" {
			t.Fatalf("t2's spec differs from the service's: got %v", t2.GetSpec())
		}
	})
}
