package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

// BenchmarkStorePropose is an IN-PROCESS micro benchmark of the replicated
// store alone: state.Store instances in this test process, Raft over plain
// TCP on 127.0.0.1, raft-boltdb on disk (fsync on), the go-memdb FSM. There
// is no gRPC, TLS, control API or forwarding, so it is the ceiling the
// control API could reach on this machine, not a user-visible figure.
//
// Every client updates its own Node object with the version its previous
// write returned, so there are no version conflicts: the figure is what Raft
// plus the FSM commit, not what read-modify-write contention leaves of it.
func BenchmarkStorePropose(b *testing.B) {
	for _, managers := range []int{1, 3} {
		b.Run(fmt.Sprintf("managers=%d", managers), func(b *testing.B) {
			leader := statetest.Cluster(b, managers)[0]
			for _, clients := range []int{1, 64} {
				// versions survive the benchmark framework's repeated calls of
				// the leaf, so each client keeps updating the same object.
				versions := make([]uint64, clients)
				b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
					proposeParallel(b, leader, clients, versions)
				})
			}
		})
	}
}

// proposeParallel runs b.N conflict-free updates from clients goroutines and
// reports writes/s. versions[i] is client i's object version, 0 before the
// object exists.
func proposeParallel(b *testing.B, leader *state.Store, clients int, versions []uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range versions {
		if versions[i] == 0 {
			v, err := leader.Propose(ctx, nodeAction(shoalpb.StoreActionKind_STORE_ACTION_CREATE, clients, i, 0))
			if err != nil {
				b.Fatalf("create bench object %d: %v", i, err)
			}
			versions[i] = v
		}
	}
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) && failed.Load() == nil {
				v, err := leader.Propose(ctx, nodeAction(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, clients, i, versions[i]))
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				versions[i] = v
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if errp := failed.Load(); errp != nil {
		b.Fatalf("propose: %v", *errp)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// nodeAction creates or updates the object of client i of a run with
// clients clients.
func nodeAction(kind shoalpb.StoreActionKind, clients, i int, version uint64) *shoalpb.StoreAction {
	n := &shoalpb.Node{
		Id:   fmt.Sprintf("bench-%d-clients-%03d", clients, i),
		Meta: &shoalpb.Meta{Version: version},
		Spec: &shoalpb.NodeSpec{Labels: map[string]string{"bench": fmt.Sprint(version)}},
	}
	return &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Node{Node: n}}
}
