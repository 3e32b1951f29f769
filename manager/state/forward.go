package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// leaderPoll is how often Propose and CatchUp look for a leader while none
// is known.
const leaderPoll = 20 * time.Millisecond

// Propose applies actions atomically through raft and returns the log index
// they were applied at (every written object's Meta.Version).
//
// On the leader it calls raft.Apply. On a follower it sends the command to
// the leader through Config.Forwarder (ErrNotLeader without one), then waits
// until the local store applied it, so the caller reads its own write. While
// no leader is known it polls for up to Config.LeaderWait, then fails with
// ErrNoLeader. Apply's refusals (ErrVersionConflict, ErrNotFound, ErrExists,
// ErrInvalidAction) come back wrapped; the store is then unchanged.
//
// If leadership is lost while the command is in flight (ErrLeadershipLost),
// if ctx ends while waiting for the commit, or if the Forwarder fails in
// transit, the command may or may not have been applied: callers re-read before retrying. The actions are not modified.
func (s *Store) Propose(ctx context.Context, actions ...*shoalpb.StoreAction) (uint64, error) {
	if len(actions) == 0 {
		return 0, fmt.Errorf("propose: %w: no actions", ErrInvalidAction)
	}
	cmd, err := proto.Marshal(&shoalpb.Command{Actions: actions})
	if err != nil {
		return 0, fmt.Errorf("propose: %w: encode: %w", ErrInvalidAction, err)
	}
	var index uint64
	err = s.withLeader(ctx, "propose", func() (retry bool, err error) {
		index, retry, err = s.proposeOnce(ctx, cmd)
		return retry, err
	})
	return index, err
}

// withLeader calls try until it reaches a usable leader; try reports retry
// when there was none (none known, or the one asked was not the leader).
// While there is none it polls every leaderPoll for up to Config.LeaderWait,
// then fails with ErrNoLeader.
func (s *Store) withLeader(ctx context.Context, op string, try func() (retry bool, err error)) error {
	deadline := time.Now().Add(s.cfg.LeaderWait)
	for {
		if s.isClosed() {
			return fmt.Errorf("%s: %w", op, ErrClosed)
		}
		retry, err := try()
		if !retry {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w: none elected within %s", op, ErrNoLeader, s.cfg.LeaderWait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for a leader: %w", op, ctx.Err())
		case <-s.closing:
			return fmt.Errorf("%s: %w", op, ErrClosed)
		case <-time.After(leaderPoll):
		}
	}
}

// proposeOnce tries the current leader once. retry is true when there was no
// usable leader (none known, or it turned out not to be the leader).
func (s *Store) proposeOnce(ctx context.Context, cmd []byte) (index uint64, retry bool, err error) {
	if s.IsLeader() {
		index, err = s.applyLocal(ctx, cmd)
		if errors.Is(err, ErrNotLeader) {
			return 0, true, err
		}
		return index, false, err
	}
	id, addr := s.Leader()
	if id == "" {
		return 0, true, nil
	}
	if id == s.cfg.NodeID {
		// Raft names us leader but no longer is: wait for the next one.
		return 0, true, nil
	}
	if s.cfg.Forwarder == nil {
		return 0, false, s.notLeader("propose")
	}
	index, err = s.cfg.Forwarder.Forward(ctx, id, addr, cmd)
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) {
		return 0, true, err
	}
	if err != nil {
		return 0, false, fmt.Errorf("propose via leader %s: %w", id, err)
	}
	if err := s.WaitApplied(ctx, index); err != nil {
		return 0, false, fmt.Errorf("propose: applied at %d on the leader, not yet here: %w", index, err)
	}
	return index, false, nil
}

// ApplyCommand is the leader side of forwarding: it applies a marshalled
// shoalpb.Command sent by a follower's Forwarder and returns its index. On a
// follower it returns ErrNotLeader (naming the leader if known).
func (s *Store) ApplyCommand(ctx context.Context, cmd []byte) (uint64, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("apply command: %w", ErrClosed)
	}
	var c shoalpb.Command
	if err := proto.Unmarshal(cmd, &c); err != nil {
		return 0, fmt.Errorf("apply command: %w: decode: %w", ErrInvalidAction, err)
	}
	if len(c.Actions) == 0 {
		return 0, fmt.Errorf("apply command: %w: no actions", ErrInvalidAction)
	}
	if !s.IsLeader() {
		return 0, s.notLeader("apply command")
	}
	return s.applyLocal(ctx, cmd)
}

// applyLocal runs raft.Apply on this node and returns the FSM's verdict.
func (s *Store) applyLocal(ctx context.Context, cmd []byte) (uint64, error) {
	f := s.raft.Apply(cmd, timeoutOf(ctx))
	if err := waitFuture(ctx, f); err != nil {
		if errors.Is(err, raft.ErrLeadershipLost) {
			return 0, fmt.Errorf("propose: %w before the command committed; "+
				"it may or may not have been applied: %w", ErrLeadershipLost, err)
		}
		return 0, s.raftError("propose", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return 0, fmt.Errorf("propose: %w", err)
	}
	return f.Index(), nil
}
