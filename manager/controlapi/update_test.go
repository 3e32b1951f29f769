package controlapi

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

// conflictCounter is a real store that counts the proposals refused with a
// version conflict.
type conflictCounter struct {
	*state.Store
	conflicts *atomic.Int64
}

func (c conflictCounter) Propose(ctx context.Context, actions ...*shoalpb.StoreAction) (uint64, error) {
	index, err := c.Store.Propose(ctx, actions...)
	if errors.Is(err, state.ErrVersionConflict) {
		c.conflicts.Add(1)
	}
	return index, err
}

// realServers runs a control API on each manager of an in-process
// 3-manager cluster holding one node, "n1".
func realServers(t *testing.T) ([]*Server, []*state.Store, *atomic.Int64) {
	t.Helper()
	stores := statetest.Cluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	create := &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE,
		Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{Id: "n1", Spec: &shoalpb.NodeSpec{}}}}
	if _, err := stores[0].Propose(ctx, create); err != nil {
		t.Fatalf("create n1: %v", err)
	}
	conflicts := new(atomic.Int64)
	servers := make([]*Server, len(stores))
	for i, s := range stores {
		servers[i] = New(Config{Store: conflictCounter{s, conflicts}, Liveness: alive{}, NodeID: fmt.Sprintf("m%d", i+1)})
	}
	return servers, stores, conflicts
}

// 64 clients spread over the three managers add their own label to the same
// node at once: every update gets through, none is lost.
func TestConcurrentUpdatesOfOneObject(t *testing.T) {
	servers, stores, _ := realServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const clients = 64
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			_, err := servers[i%len(servers)].UpdateNode(ctx, &shoalpb.UpdateNodeRequest{
				Node: "n1", LabelAdd: map[string]string{fmt.Sprintf("client-%02d", i): "x"}})
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Errorf("update: %v", err)
		}
	}
	for i, s := range stores {
		if err := s.CatchUp(ctx); err != nil {
			t.Fatalf("m%d: catch up: %v", i+1, err)
		}
		var labels map[string]string
		s.View(func(tx state.ReadTx) { labels = tx.Node("n1").GetSpec().GetLabels() })
		if len(labels) != clients {
			t.Fatalf("m%d holds %d labels, want %d: %v", i+1, len(labels), clients, labels)
		}
	}
}

// One client whose successive updates go through manager 1, 2, 3, 1, …
// never proposes a stale version: each manager catches up with the write
// made through the previous one before reading.
func TestAlternatingManagersDoNotConflict(t *testing.T) {
	servers, _, conflicts := realServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 30 {
		_, err := servers[i%len(servers)].UpdateNode(ctx, &shoalpb.UpdateNodeRequest{
			Node: "n1", LabelAdd: map[string]string{"step": fmt.Sprint(i)}})
		if err != nil {
			t.Fatalf("update %d through m%d: %v", i, i%len(servers)+1, err)
		}
	}
	if n := conflicts.Load(); n != 0 {
		t.Fatalf("%d proposals refused with a version conflict, want none", n)
	}
}
