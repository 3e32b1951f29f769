package orchestrator

import (
	"fmt"
	"slices"
	"testing"

	shoalpb "shoal/proto"
)

func TestBatcher(t *testing.T) {
	actions := func(n int) []*shoalpb.StoreAction {
		out := make([]*shoalpb.StoreAction, n)
		for i := range out {
			out[i] = taskAction(shoalpb.StoreActionKind_STORE_ACTION_DELETE, &shoalpb.Task{Id: fmt.Sprint(i)})
		}
		return out
	}
	var b batcher
	b.add("s1", actions(150))
	b.add("s2", actions(30))  // fits with s1
	b.add("s3", actions(100)) // does not: a batch of its own
	b.add("s4", actions(450)) // too big for one batch: split
	b.add("", actions(10))    // scheduling updates name no service
	var sizes []int
	var services [][]string
	for _, x := range b.batches {
		sizes = append(sizes, len(x.actions))
		services = append(services, x.services)
	}
	if want := []int{180, 100, 200, 200, 60}; !slices.Equal(sizes, want) {
		t.Fatalf("batch sizes %v, want %v", sizes, want)
	}
	want := [][]string{{"s1", "s2"}, {"s3"}, {"s4"}, {"s4"}, {"s4"}}
	if !slices.EqualFunc(services, want, slices.Equal) {
		t.Fatalf("batch services %v, want %v", services, want)
	}
}

func TestPlanActions(t *testing.T) {
	svc := service("a", replMode, 1)
	p := Plan{
		Create:   []*shoalpb.Task{task("c", svc, 1, "", pending)},
		Shutdown: []*shoalpb.Task{task("s", svc, 2, "n1", running)},
		Orphan:   []*shoalpb.Task{task("o", svc, 3, "n1", orphaned)},
		Remove:   []*shoalpb.Task{task("r", svc, 4, "n1", running)},
		Delete:   []string{"d"},
		Service:  svc,
	}
	var got []string
	for _, a := range p.Actions() {
		got = append(got, a.Kind.String()+" "+a.GetTask().GetId()+a.GetService().GetId())
	}
	want := []string{"STORE_ACTION_UPDATE a", "STORE_ACTION_CREATE c", "STORE_ACTION_UPDATE o", "STORE_ACTION_UPDATE s", "STORE_ACTION_UPDATE r", "STORE_ACTION_DELETE d"}
	if !slices.Equal(got, want) {
		t.Fatalf("actions %v, want %v", got, want)
	}
	if p.Writes() != 6 || p.Empty() || !(Plan{}).Empty() {
		t.Fatal("Writes/Empty disagree with the plan")
	}
}
