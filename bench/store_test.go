package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"shoal/manager/state"
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
			leader := openStores(b, managers)
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

// tcpStreamLayer carries Raft over plain TCP.
type tcpStreamLayer struct{ net.Listener }

func (l tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// openStores opens n stores on 127.0.0.1 in temporary directories, the first
// bootstrapped and the others added as voters, and returns the leader. The
// stores are closed when b ends.
func openStores(b *testing.B, n int) *state.Store {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var leader *state.Store
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatalf("listen: %v", err)
		}
		id := fmt.Sprintf("m%d", i+1)
		s, err := state.Open(state.Config{
			NodeID:      id,
			Dir:         b.TempDir(),
			Addr:        ln.Addr().String(),
			StreamLayer: tcpStreamLayer{ln},
			Bootstrap:   i == 0,
			Logger:      slog.New(slog.DiscardHandler),
		})
		if err != nil {
			ln.Close()
			b.Fatalf("open store %s: %v", id, err)
		}
		b.Cleanup(func() { s.Close() })
		if i == 0 {
			leader = s
			waitUntil(b, 30*time.Second, "the first store to lead", s.IsLeader)
			continue
		}
		if err := leader.AddVoter(ctx, id, ln.Addr().String()); err != nil {
			b.Fatalf("add voter %s: %v", id, err)
		}
		waitUntil(b, 30*time.Second, id+" to apply the log", func() bool {
			return s.AppliedIndex() >= leader.AppliedIndex()
		})
	}
	return leader
}

// waitUntil polls cond every 10 ms until it holds, or fails b after timeout.
func waitUntil(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
