// Package statetest runs replicated stores inside the test process, for the
// tests and benchmarks of what is built on manager/state: real Raft over
// plain TCP on 127.0.0.1, raft-boltdb with fsync in temporary directories,
// followers forwarding to the leader by direct calls instead of gRPC.
package statetest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"shoal/internal/testutil"
	"shoal/manager/state"
)

// Cluster opens n stores, the first bootstrapped and leading, the others
// added as voters, and returns them once every one has applied the log. The
// stores are closed when tb ends.
func Cluster(tb testing.TB, n int) []*state.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fwd := &forwarder{stores: map[string]*state.Store{}}
	stores := make([]*state.Store, 0, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("listen: %v", err)
		}
		id := fmt.Sprintf("m%d", i+1)
		s, err := state.Open(state.Config{
			NodeID:      id,
			Dir:         tb.TempDir(),
			Addr:        ln.Addr().String(),
			StreamLayer: tcpStreamLayer{ln},
			Bootstrap:   i == 0,
			Forwarder:   fwd,
			Logger:      slog.New(slog.DiscardHandler),
		})
		if err != nil {
			ln.Close()
			tb.Fatalf("open store %s: %v", id, err)
		}
		tb.Cleanup(func() { s.Close() })
		fwd.add(id, s)
		stores = append(stores, s)
		if i == 0 {
			testutil.Eventually(tb, 30*time.Second, func() error {
				if !s.IsLeader() {
					return fmt.Errorf("%s does not lead yet", id)
				}
				return nil
			})
			continue
		}
		// Through whichever store leads: on a loaded machine the first
		// one may lose its leadership while a voter is added.
		testutil.Eventually(tb, 30*time.Second, func() error {
			for _, l := range stores {
				if l.IsLeader() {
					return l.AddVoter(ctx, id, ln.Addr().String())
				}
			}
			return fmt.Errorf("add voter %s: no store leads", id)
		})
		testutil.Eventually(tb, 30*time.Second, func() error {
			if have, want := s.AppliedIndex(), stores[0].AppliedIndex(); have < want {
				return fmt.Errorf("%s applied %d of %d", id, have, want)
			}
			return nil
		})
	}
	return stores
}

// forwarder implements state.Forwarder by calling the leader's store.
type forwarder struct {
	mu     sync.Mutex
	stores map[string]*state.Store
}

func (f *forwarder) add(id string, s *state.Store) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stores[id] = s
}

func (f *forwarder) store(id string) (*state.Store, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.stores[id]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("statetest: unknown store %s", id)
}

func (f *forwarder) Forward(ctx context.Context, leaderID, _ string, cmd []byte) (uint64, error) {
	s, err := f.store(leaderID)
	if err != nil {
		return 0, err
	}
	return s.ApplyCommand(ctx, cmd)
}

func (f *forwarder) ReadIndex(_ context.Context, leaderID, _ string) (uint64, error) {
	s, err := f.store(leaderID)
	if err != nil {
		return 0, err
	}
	return s.ReadIndex()
}

// tcpStreamLayer carries Raft over plain TCP.
type tcpStreamLayer struct{ net.Listener }

func (l tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
