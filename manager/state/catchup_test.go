package state

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A write made through one manager is visible on another right after
// CatchUp there, whether the writer or the reader is the leader: without
// CatchUp the reader may not have learnt that the write committed yet.
func TestCatchUpSeesWritesMadeElsewhere(t *testing.T) {
	c := threeNodes(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader()
	nodes := append([]*testNode{leader}, c.followers(leader)...)
	for i := range 30 {
		writer, reader := nodes[i%3], nodes[(i+1)%3]
		id := fmt.Sprintf("n%02d", i)
		idx, err := writer.s().Propose(ctx, createNode(id))
		if err != nil {
			t.Fatalf("propose %s through %s: %v", id, writer.id, err)
		}
		if err := reader.s().CatchUp(ctx); err != nil {
			t.Fatalf("catch up on %s: %v", reader.id, err)
		}
		if n := nodeOf(reader.s(), id); n.GetMeta().GetVersion() != idx {
			t.Fatalf("%s after CatchUp: %s written at %d through %s reads as %v", reader.id, id, idx, writer.id, n)
		}
	}
}

// Raft entries that never reach the store (the leader's no-op, barriers,
// configuration changes) do not make CatchUp wait for an index that the
// store's AppliedIndex never reaches.
func TestReadIndexIsTheLastCommand(t *testing.T) {
	c := newTestCluster(t, nil)
	n := c.add("m1", true)
	c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := n.s()
	if err := s.CatchUp(ctx); err != nil {
		t.Fatalf("catch up before any command: %v", err)
	}
	idx, err := s.Propose(ctx, createNode("n1"))
	if err != nil {
		t.Fatalf("propose: %v", err)
	}
	if err := s.Barrier(ctx); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	c.join("m2")
	if commit := s.raft.CommitIndex(); commit <= idx {
		t.Fatalf("commit index %d: want entries after the command at %d", commit, idx)
	}
	if got, err := s.ReadIndex(); err != nil || got != idx {
		t.Fatalf("ReadIndex: got %d, %v; want the command's index %d", got, err, idx)
	}
	if err := s.CatchUp(ctx); err != nil {
		t.Fatalf("catch up: %v", err)
	}
	follower := c.nodes["m2"].s()
	if _, err := follower.ReadIndex(); err == nil {
		t.Fatalf("ReadIndex on a follower: want ErrNotLeader")
	}
	if err := follower.CatchUp(ctx); err != nil {
		t.Fatalf("catch up on the follower: %v", err)
	}
	if nodeOf(follower, "n1") == nil {
		t.Fatalf("the follower does not hold n1 after CatchUp")
	}
}

// Concurrent CatchUps on a follower share read-index requests, and each is
// answered by a request sent after it was called.
func TestCatchUpSharesReadIndexRequests(t *testing.T) {
	c := threeNodes(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader()
	follower := c.followers(leader)[0]
	var requests atomic.Int64
	release := make(chan struct{})
	c.mu.Lock()
	c.readIndexHook = func() {
		if requests.Add(1) == 1 {
			<-release // hold the first request until every caller waits
		}
	}
	c.mu.Unlock()

	first := make(chan error, 1)
	go func() { first <- follower.s().CatchUp(ctx) }()
	waitFor(t, 10*time.Second, "the first read-index request", func() bool { return requests.Load() == 1 })
	// Written after the first request was sent: only a later request covers it.
	idx, err := leader.s().Propose(ctx, createNode("late"))
	if err != nil {
		t.Fatalf("propose: %v", err)
	}
	const callers = 32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := follower.s().CatchUp(ctx); err != nil {
				errs <- err
				return
			}
			if n := nodeOf(follower.s(), "late"); n.GetMeta().GetVersion() != idx {
				errs <- fmt.Errorf("after CatchUp the follower reads %v, want the write at %d", n, idx)
			}
		}()
	}
	waitFor(t, 10*time.Second, "every caller queued behind the held request", func() bool { return follower.s().reads.waiting() == callers })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first catch up: %v", err)
	}
	if n := requests.Load(); n > callers/2 {
		t.Fatalf("%d read-index requests for %d concurrent callers: they were not shared", n, callers+1)
	}
}

// waiting returns how many callers wait for the request not sent yet.
func (r *readIndexer) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		return 0
	}
	return r.next.callers
}
