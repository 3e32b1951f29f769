package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Raft tuning for a LAN: a lost leader is replaced within about a second.
// The leader steps down when a quorum has not answered it for
// leaderLeaseTimeout: as long as the followers wait before they elect
// another, so that a leader slowed by a busy machine does not abdicate
// sooner than it would be replaced.
const (
	heartbeatTimeout   = 500 * time.Millisecond
	electionTimeout    = 500 * time.Millisecond
	leaderLeaseTimeout = 500 * time.Millisecond
	commitTimeout      = 5 * time.Millisecond
	maxAppendEntries   = 256
	transportMaxPool   = 3
	transportTimeout   = 2 * time.Second
	// notifyBuffer lets raft report leadership changes without waiting for
	// the relay goroutine.
	notifyBuffer = 16
)

// start opens the raft stores and transport, applies Bootstrap or
// ForceNewCluster, and starts raft. On error the caller closes s.trans and
// s.bolt if set.
func (s *Store) start() error {
	var err error
	if s.bolt, err = openBolt(s.cfg.Dir); err != nil {
		return err
	}
	if s.logs, err = raft.NewLogCache(logCacheSize, s.bolt); err != nil {
		return fmt.Errorf("state: log cache: %w", err)
	}
	hlog := newHCLogger(s.log, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.Dir, snapshotsRetain, hlog.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("state: open snapshots: %w", err)
	}
	s.trans = raft.NewNetworkTransportWithLogger(s.cfg.StreamLayer, transportMaxPool, transportTimeout, hlog.Named("net"))

	notify := make(chan bool, notifyBuffer)
	conf := s.raftConfig(hlog, notify)
	if err := raft.ValidateConfig(conf); err != nil {
		return fmt.Errorf("state: raft config: %w", err)
	}
	hasState, err := raft.HasExistingState(s.logs, s.bolt, snaps)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	self := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(s.cfg.NodeID), Address: raft.ServerAddress(s.cfg.Addr),
	}}}
	switch {
	case s.cfg.ForceNewCluster:
		if !hasState {
			return fmt.Errorf("state: force new cluster: %s holds no raft state to recover", s.cfg.Dir)
		}
		// RecoverCluster replays the log into a scratch FSM, snapshots it and
		// writes the one-node configuration; the real FSM then starts from
		// that snapshot.
		scratch := newFSM(s.log.With("recovery", true), newBroker(s.log))
		if err := raft.RecoverCluster(conf, scratch, s.logs, s.bolt, snaps, s.trans, self); err != nil {
			return fmt.Errorf("state: force new cluster: %w", err)
		}
		s.log.Warn("raft configuration rewritten to this node alone (force new cluster)")
	case s.cfg.Bootstrap && !hasState:
		if err := raft.BootstrapCluster(conf, s.logs, s.bolt, snaps, s.trans, self); err != nil {
			return fmt.Errorf("state: bootstrap: %w", err)
		}
		s.log.Info("bootstrapped a new raft cluster")
	}
	if s.raft, err = raft.NewRaft(conf, s.fsm, s.logs, s.bolt, snaps, s.trans); err != nil {
		return fmt.Errorf("state: start raft: %w", err)
	}
	s.wg.Add(1)
	go s.relayLeadership(notify)
	return nil
}

func (s *Store) raftConfig(logger hclog.Logger, notify chan<- bool) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(s.cfg.NodeID)
	c.HeartbeatTimeout = heartbeatTimeout
	c.ElectionTimeout = electionTimeout
	c.LeaderLeaseTimeout = leaderLeaseTimeout
	c.CommitTimeout = commitTimeout
	c.MaxAppendEntries = maxAppendEntries
	c.BatchApplyCh = true
	c.SnapshotThreshold = s.cfg.SnapshotThreshold
	c.TrailingLogs = s.cfg.TrailingLogs
	c.SnapshotInterval = s.cfg.SnapshotInterval
	c.NotifyCh = notify
	c.Logger = logger
	return c
}

// relayLeadership forwards raft's leadership notifications to LeaderChanges
// in order, queueing them so raft never waits for the consumer. When the
// store closes it makes sure the last value handed over is false.
func (s *Store) relayLeadership(in <-chan bool) {
	defer s.wg.Done()
	var queue []bool
	last := false // the last value put into s.leaderCh
	for {
		var out chan<- bool
		var next bool
		if len(queue) > 0 {
			out, next = s.leaderCh, queue[0]
		}
		select {
		case v := <-in:
			s.log.Info("raft leadership changed", "leader", v)
			queue = append(queue, v)
		case out <- next:
			queue, last = queue[1:], next
		case <-s.closing:
			if last {
				s.handOverLoss()
			}
			return
		}
	}
}

// handOverLoss puts a final false in LeaderChanges without blocking: the
// buffered slot holds at most one value, which is replaced if the consumer
// has not taken it.
func (s *Store) handOverLoss() {
	for {
		select {
		case s.leaderCh <- false:
			return
		default:
		}
		select {
		case <-s.leaderCh: // an unread true: the consumer never saw it
		default:
		}
	}
}

// LeaderChanges returns the channel of leadership changes: true when this
// node becomes leader, false when it stops being leader, in order. It has a
// single consumer. It is never closed; if the node leads when Close is
// called, a final false is delivered.
func (s *Store) LeaderChanges() <-chan bool { return s.leaderCh }

// IsLeader reports whether this node is the raft leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the current leader's id and raft address, empty if unknown.
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// notLeader wraps ErrNotLeader with the known leader, for the caller to retry
// there.
func (s *Store) notLeader(op string) error {
	id, addr := s.Leader()
	if id == "" {
		return fmt.Errorf("%s: %w (no leader known)", op, ErrNotLeader)
	}
	return fmt.Errorf("%s: %w (leader is %s at %s)", op, ErrNotLeader, id, addr)
}

// waitFuture waits for a raft future, or for ctx. A future abandoned on ctx
// still completes in raft (at the latest at shutdown).
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raftError maps raft's errors to this package's sentinels where one fits.
func (s *Store) raftError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		id, addr := s.Leader()
		return fmt.Errorf("%s: %w: %w (leader %q at %q)", op, ErrNotLeader, err, id, addr)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%s: %w: %w", op, ErrClosed, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// timeoutOf is the time left before ctx's deadline, 0 (no limit) without one.
func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
		return time.Nanosecond
	}
	return 0
}

// Barrier waits until every entry committed before the call is applied to
// the local store. Leader only (ErrNotLeader); a new leader calls it before
// starting its loops so they read a complete store.
func (s *Store) Barrier(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("barrier: %w", ErrClosed)
	}
	return s.raftError("barrier", waitFuture(ctx, s.raft.Barrier(timeoutOf(ctx))))
}

// Member is one server of the raft configuration.
type Member struct {
	ID, Addr string
	Voter    bool
}

// Members returns the current raft configuration.
func (s *Store) Members() ([]Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.raftError("members", err)
	}
	servers := f.Configuration().Servers
	out := make([]Member, 0, len(servers))
	for _, srv := range servers {
		out = append(out, Member{ID: string(srv.ID), Addr: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds a voter, or changes a voter's address. Leader only
// (ErrNotLeader). It is a no-op if id is already a voter at addr.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	if !s.IsLeader() {
		return s.notLeader("add voter")
	}
	members, err := s.Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.ID == id && m.Addr == addr && m.Voter {
			return nil
		}
	}
	f := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx))
	if err := s.raftError("add voter "+id, waitFuture(ctx, f)); err != nil {
		return err
	}
	s.log.Info("raft voter added", "id", id, "addr", addr)
	return nil
}

// RemoveServer removes a server from the raft configuration. Leader only
// (ErrNotLeader). It is a no-op if id is not a member, and refuses to remove
// the last voter (ErrLastVoter). Removing the leader itself makes it step
// down once the change commits.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	if !s.IsLeader() {
		return s.notLeader("remove server")
	}
	members, err := s.Members()
	if err != nil {
		return err
	}
	found, voters := false, 0
	var isVoter bool
	for _, m := range members {
		if m.Voter {
			voters++
		}
		if m.ID == id {
			found, isVoter = true, m.Voter
		}
	}
	if !found {
		return nil
	}
	if isVoter && voters == 1 {
		return fmt.Errorf("remove server %s: %w: the cluster would have no voter left; "+
			"add another manager first, or remove the whole cluster", id, ErrLastVoter)
	}
	f := s.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx))
	if err := s.raftError("remove server "+id, waitFuture(ctx, f)); err != nil {
		return err
	}
	s.log.Info("raft server removed", "id", id)
	return nil
}

// TransferLeadership hands leadership to another voter and waits for the
// transfer. Leader only (ErrNotLeader).
func (s *Store) TransferLeadership(ctx context.Context) error {
	if !s.IsLeader() {
		return s.notLeader("transfer leadership")
	}
	return s.raftError("transfer leadership", waitFuture(ctx, s.raft.LeadershipTransfer()))
}

// Stats returns raft's statistics (raft.Raft.Stats) plus "store_applied_index",
// the index AppliedIndex reports.
func (s *Store) Stats() map[string]string {
	st := s.raft.Stats()
	st["store_applied_index"] = fmt.Sprint(s.AppliedIndex())
	return st
}
