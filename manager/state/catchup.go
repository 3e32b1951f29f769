package state

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// CatchUp waits until this replica has applied every write the leader had
// committed when CatchUp was called, so a View afterwards sees them, whichever
// manager made them. Call it before the read of a read-modify-write, and
// again before re-reading after ErrVersionConflict: the update then carries
// the current version instead of one this replica had not caught up on.
//
// On the leader it only waits for the local store to apply the commit index.
// A follower asks the leader for its read index (Config.Forwarder's
// ReadIndex; ErrNotLeader without one); concurrent callers share one
// request, sent after the last of them arrived. While no leader is known it
// polls like Propose, then fails with ErrNoLeader.
//
// A leader just elected, or deposed without knowing it yet, may answer with
// an older index. That only costs a conflict: an UPDATE is still checked
// against the stored version when it applies.
func (s *Store) CatchUp(ctx context.Context) error {
	var index uint64
	err := s.withLeader(ctx, "catch up", func() (retry bool, err error) {
		index, retry, err = s.readIndexOnce(ctx)
		return retry, err
	})
	if err != nil {
		return err
	}
	if err := s.WaitApplied(ctx, index); err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	return nil
}

// ReadIndex is the leader side of CatchUp: the index a replica must have
// applied to hold every write this leader has committed. On a follower it
// returns ErrNotLeader (naming the leader if known).
func (s *Store) ReadIndex() (uint64, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("read index: %w", ErrClosed)
	}
	if !s.IsLeader() {
		return 0, s.notLeader("read index")
	}
	return s.lastCommandAtOrBefore(s.raft.CommitIndex()), nil
}

// lastCommandAtOrBefore returns the index of the last command at or before
// index: AppliedIndex counts commands only, so a no-op, barrier or
// configuration entry at the commit index would never be reached. Without a
// command after the applied index it returns the applied index.
func (s *Store) lastCommandAtOrBefore(index uint64) uint64 {
	applied := s.AppliedIndex()
	var l raft.Log
	for i := index; i > applied; i-- {
		if err := s.logs.GetLog(i, &l); err != nil {
			// Compacted away: a snapshot holds everything up to i, so the
			// store has applied every command up to i, and there is none
			// after it.
			return s.AppliedIndex()
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return applied
}

// readIndexOnce gets the read index once: locally on the leader, from the
// leader through the shared request on a follower. retry is true when there
// was no usable leader.
func (s *Store) readIndexOnce(ctx context.Context) (index uint64, retry bool, err error) {
	if s.IsLeader() {
		index, err = s.ReadIndex()
		return index, errors.Is(err, ErrNotLeader), err
	}
	if s.cfg.Forwarder == nil {
		return 0, false, s.notLeader("catch up")
	}
	r, err := s.reads.get(ctx, s.fetchReadIndex)
	if err != nil {
		return 0, false, fmt.Errorf("catch up: %w", err)
	}
	return r.index, r.retry, r.err
}

// fetchReadIndex asks the leader for its read index on behalf of every caller
// sharing the request. It is bounded by Config.LeaderWait and by Close, not
// by any one caller's context.
func (s *Store) fetchReadIndex() readIndexResult {
	id, addr := s.Leader()
	if id == "" || id == s.cfg.NodeID {
		return readIndexResult{retry: true}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LeaderWait)
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	index, err := s.cfg.Forwarder.ReadIndex(ctx, id, addr)
	switch {
	case err == nil:
		return readIndexResult{index: index}
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader), ctx.Err() != nil:
		// A leader that does not answer within LeaderWait is no more usable
		// than one that says it is not the leader.
		return readIndexResult{retry: true, err: err}
	}
	return readIndexResult{err: fmt.Errorf("read index from leader %s: %w", id, err)}
}

// readIndexResult is the outcome of one read-index request.
type readIndexResult struct {
	index uint64
	retry bool // no usable leader
	err   error
}

// readIndexer coalesces concurrent read-index requests: a caller joins the
// request not sent yet, or starts one; a request is sent only after the one
// in flight is answered. Every caller therefore gets an answer given after it
// arrived, and a follower under load sends one request per leader round trip
// instead of one per caller.
type readIndexer struct {
	mu      sync.Mutex
	next    *readIndexCall // not sent yet; nil if no caller is waiting for one
	running bool           // a goroutine is sending requests
}

type readIndexCall struct {
	done    chan struct{} // closed once result is set
	result  readIndexResult
	callers int // how many callers share it; under readIndexer.mu
}

// get returns the answer to a request sent after the call, made by fetch.
func (r *readIndexer) get(ctx context.Context, fetch func() readIndexResult) (readIndexResult, error) {
	r.mu.Lock()
	call := r.next
	if call == nil {
		call = &readIndexCall{done: make(chan struct{})}
		r.next = call
		if !r.running {
			r.running = true
			go r.run(fetch)
		}
	}
	call.callers++
	r.mu.Unlock()
	select {
	case <-call.done:
		return call.result, nil
	case <-ctx.Done():
		return readIndexResult{}, ctx.Err()
	}
}

// run sends the waiting requests one after the other until none is left.
func (r *readIndexer) run(fetch func() readIndexResult) {
	for {
		r.mu.Lock()
		call := r.next
		r.next = nil
		if call == nil {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		call.result = fetch()
		close(call.done)
	}
}
