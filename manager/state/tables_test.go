package state

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

func createService(id, name string) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE,
		Target: &shoalpb.StoreAction_Service{Service: &shoalpb.Service{Id: id, Spec: &shoalpb.ServiceSpec{Name: name}}}}
}

func taskAction(kind shoalpb.StoreActionKind, t *shoalpb.Task) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Task{Task: t}}
}

func ids[T interface{ GetId() string }](list []T) []string {
	out := make([]string, len(list))
	for i, o := range list {
		out[i] = o.GetId()
	}
	return out
}

func TestServicesAndTasksIndexes(t *testing.T) {
	f := testFSM()
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	if err := apply(t, f, 1,
		createService("s1", "web"), createService("s2", "db"),
		taskAction(create, &shoalpb.Task{Id: "t3", ServiceId: "s1", NodeId: "n1"}),
		taskAction(create, &shoalpb.Task{Id: "t1", ServiceId: "s1"}),
		taskAction(create, &shoalpb.Task{Id: "t2", ServiceId: "s2", NodeId: "n1"}),
	); err != nil {
		t.Fatal(err)
	}
	check := func(when string, byName map[string]string, byService, byNode map[string][]string) {
		t.Helper()
		f.view(func(tx ReadTx) {
			for name, want := range byName {
				got := ""
				if s := tx.ServiceByName(name); s != nil {
					got = s.Id
				}
				if got != want {
					t.Fatalf("%s: ServiceByName(%q) = %q, want %q", when, name, got, want)
				}
			}
			for svc, want := range byService {
				if got := ids(tx.TasksByService(svc)); !slices.Equal(got, want) {
					t.Fatalf("%s: TasksByService(%q) = %v, want %v", when, svc, got, want)
				}
			}
			for node, want := range byNode {
				if got := ids(tx.TasksByNode(node)); !slices.Equal(got, want) {
					t.Fatalf("%s: TasksByNode(%q) = %v, want %v", when, node, got, want)
				}
			}
		})
	}
	if err := apply(t, f, 2, createService("s3", "web")); !errors.Is(err, ErrExists) {
		t.Fatalf("a second service named web: got %v, want ErrExists", err)
	}
	check("created", map[string]string{"web": "s1", "db": "s2", "nope": ""},
		map[string][]string{"s1": {"t1", "t3"}, "s2": {"t2"}},
		map[string][]string{"n1": {"t2", "t3"}, "n2": nil})

	var t1 *shoalpb.Task
	f.view(func(tx ReadTx) { t1 = proto.Clone(tx.Task("t1")).(*shoalpb.Task) })
	t1.NodeId = "n2"
	if err := apply(t, f, 3, taskAction(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, t1),
		taskAction(shoalpb.StoreActionKind_STORE_ACTION_DELETE, &shoalpb.Task{Id: "t2"})); err != nil {
		t.Fatal(err)
	}
	check("assigned and deleted", nil,
		map[string][]string{"s1": {"t1", "t3"}, "s2": nil},
		map[string][]string{"n1": {"t3"}, "n2": {"t1"}})

	restored := testFSM()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	f = restored
	check("restored", map[string]string{"web": "s1", "db": "s2"},
		map[string][]string{"s1": {"t1", "t3"}},
		map[string][]string{"n1": {"t3"}, "n2": {"t1"}})
}

// Networks: names and subnets are unique, and no two subnets overlap, so
// that racing creates through several managers cannot store clashing
// networks; an update of a network keeps its own subnet.
func TestNetworkSubnetsApart(t *testing.T) {
	f := testFSM()
	network := func(kind shoalpb.StoreActionKind, id, name, subnet string, version uint64) *shoalpb.StoreAction {
		return &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Network{Network: &shoalpb.Network{
			Id: id, Meta: &shoalpb.Meta{Version: version}, Spec: &shoalpb.NetworkSpec{Name: name}, Subnet: subnet}}}
	}
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	if err := apply(t, f, 1, network(create, "n1", "back", "10.64.0.0/16", 0)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, name, subnet string }{
		{"n2", "back", "10.65.0.0/16"},   // same name
		{"n3", "front", "10.64.0.0/16"},  // same subnet
		{"n4", "front", "10.64.16.0/20"}, // inside back's
		{"n5", "front", "10.0.0.0/8"},    // holding back's
	} {
		if err := apply(t, f, 2, network(create, c.id, c.name, c.subnet, 0)); !errors.Is(err, ErrExists) {
			t.Errorf("%s %s %s: got %v, want ErrExists", c.id, c.name, c.subnet, err)
		}
	}
	if err := apply(t, f, 3, network(create, "n6", "front", "10.65.0.0/16", 0)); err != nil {
		t.Fatalf("a network apart from back: %v", err)
	}
	if err := apply(t, f, 4, network(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, "n1", "back", "10.64.0.0/16", 1)); err != nil {
		t.Fatalf("an update of back with its own subnet: %v", err)
	}
}

// A service names only stored networks, and a network a service is on is
// not deleted: whichever of a network's removal and a service's creation
// commits second is refused.
func TestNetworkReferences(t *testing.T) {
	f := testFSM()
	create, del := shoalpb.StoreActionKind_STORE_ACTION_CREATE, shoalpb.StoreActionKind_STORE_ACTION_DELETE
	back := &shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Network{Network: &shoalpb.Network{
		Id: "n1", Spec: &shoalpb.NetworkSpec{Name: "back"}, Subnet: "10.64.0.0/16"}}}
	on := func(id string, networks ...string) *shoalpb.StoreAction {
		a := createService(id, "svc-"+id)
		a.GetService().Spec.Task = &shoalpb.TaskSpec{}
		for _, n := range networks {
			a.GetService().Spec.Task.Networks = append(a.GetService().Spec.Task.Networks, &shoalpb.NetworkAttachmentConfig{Target: n})
		}
		return a
	}
	if err := apply(t, f, 1, on("s0", "n1")); !errors.Is(err, ErrInUse) {
		t.Fatalf("a service on a network not stored: %v, want ErrInUse", err)
	}
	if err := apply(t, f, 2, back, on("s1", "default", "n1")); err != nil {
		t.Fatal(err)
	}
	gone := &shoalpb.StoreAction{Kind: del, Target: &shoalpb.StoreAction_Network{Network: &shoalpb.Network{Id: "n1"}}}
	if err := apply(t, f, 3, gone); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "svc-s1") {
		t.Fatalf("deleting a network a service is on: %v, want ErrInUse naming svc-s1", err)
	}
	if err := apply(t, f, 4, &shoalpb.StoreAction{Kind: del, Target: &shoalpb.StoreAction_Service{Service: &shoalpb.Service{Id: "s1"}}}, gone); err != nil {
		t.Fatalf("deleting the service, then the network: %v", err)
	}
}
