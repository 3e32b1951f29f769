package state

import (
	"errors"
	"testing"

	shoalpb "shoal/proto"
)

// TestDraftStagesWithoutCommitting: a draft sees its own writes, refuses
// what the FSM would refuse, returns the actions as built, and leaves the
// store unchanged.
func TestDraftStagesWithoutCommitting(t *testing.T) {
	c := newTestCluster(t, nil)
	c.add("m1", true)
	s := c.leader().s()
	create := func(id, name string) *shoalpb.StoreAction {
		return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Network{
			Network: &shoalpb.Network{Id: id, Spec: &shoalpb.NetworkSpec{Name: name}, Subnet: "10.64." + id + ".0/24"}}}
	}
	actions, err := s.Draft(func(d *Draft) error {
		if err := d.Apply(create("1", "front")); err != nil {
			return err
		}
		if d.NetworkByName("front") == nil {
			t.Fatal("the draft does not see the network it created")
		}
		if err := d.Apply(create("2", "front")); !errors.Is(err, ErrExists) {
			t.Fatalf("a second network named front: err = %v, want ErrExists", err)
		}
		return d.Apply(create("3", "back"))
	})
	if err != nil {
		t.Fatalf("Draft: %v", err)
	}
	if len(actions) != 2 || actions[0].GetNetwork().GetId() != "1" || actions[1].GetNetwork().GetId() != "3" {
		t.Fatalf("actions = %v, want the creates of 1 and 3", actions)
	}
	if v := actions[0].GetNetwork().GetMeta().GetVersion(); v != 0 {
		t.Fatalf("the returned action was stamped with version %d; it must stay as built", v)
	}
	s.View(func(tx ReadTx) {
		if n := len(tx.Networks()); n != 0 {
			t.Fatalf("the store holds %d networks after a draft; want none", n)
		}
	})
	if _, err := s.Propose(t.Context(), actions...); err != nil {
		t.Fatalf("Propose the drafted actions: %v", err)
	}
	s.View(func(tx ReadTx) {
		if tx.NetworkByName("front") == nil || tx.NetworkByName("back") == nil {
			t.Fatal("the proposed actions did not create both networks")
		}
	})

	want := errors.New("build failed")
	if actions, err := s.Draft(func(d *Draft) error {
		if err := d.Apply(create("4", "other")); err != nil {
			return err
		}
		return want
	}); !errors.Is(err, want) || actions != nil {
		t.Fatalf("Draft with a failing build = %v, %v; want nil and its error", actions, err)
	}
}
