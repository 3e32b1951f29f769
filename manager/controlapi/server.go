// Package controlapi serves ControlService, the public API. Every request is
// validated before anything is written; writes go through the replicated store
// (state.Propose, forwarded to the leader by the store when needed) and reads
// are served from this manager's copy, which already holds its own writes. A
// read-modify-write first catches this copy up with the leader
// (state.CatchUp), so it starts from the latest version of what it changes.
package controlapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// Store is what the control API needs of the replicated store.
type Store interface {
	View(fn func(tx state.ReadTx))
	Draft(build func(d *state.Draft) error) ([]*shoalpb.StoreAction, error)
	Propose(ctx context.Context, actions ...*shoalpb.StoreAction) (uint64, error)
	CatchUp(ctx context.Context) error
	Leader() (id, addr string)
	Members() ([]state.Member, error)
	Watch(ctx context.Context) <-chan state.Event
}

// Liveness tells whether a node is alive according to gossip.
type Liveness interface {
	Alive(nodeID string) bool
}

// Config wires a Server.
type Config struct {
	Store    Store
	Liveness Liveness
	// NodeID is the manager serving the API ("self" in node references).
	NodeID string
	// DataDir is shown in recovery advice.
	DataDir string
	// Nodes reaches other nodes' log services.
	Nodes  NodeDialer
	Logger *slog.Logger
	Now    func() time.Time
}

// Server implements shoalpb.ControlServiceServer.
type Server struct {
	shoalpb.UnimplementedControlServiceServer
	cfg   Config
	locks objectLocks
}

// New returns a control API server.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg}
}

// objectLocks orders the updates of one object made through this manager,
// so at most one of them is in Raft at a time; through other managers, or by
// the leader's loops, an update can still lose the version race. The loser
// catches up and tries again after a short jittered exponential backoff, for
// up to retryFor (a manager whose writes take longer, a follower, can lose
// many rounds in a row to a stream of updates through the leader), then
// gives up with Aborted.
const (
	retryFor        = 10 * time.Second
	retryBackoffMin = time.Millisecond
	retryBackoffMax = 16 * time.Millisecond
)

// update catches up with the leader, reads, mutates and proposes until the
// write does not race with another one. build returns the actions to propose
// from a fresh read. The objects written stay locked on this manager from
// the first read that names them to the end (objectLocks); if another update
// of them was in progress, they are read again once it is over.
func (s *Server) update(ctx context.Context, build func(tx state.ReadTx) ([]*shoalpb.StoreAction, error)) error {
	return s.write(ctx, func() (actions []*shoalpb.StoreAction, err error) {
		s.cfg.Store.View(func(tx state.ReadTx) { actions, err = build(tx) })
		return actions, err
	}, state.ErrVersionConflict)
}

// updateDraft is update for writers whose actions depend on each other:
// build applies each to a draft of the state (state.Draft). Besides
// version conflicts, it builds again when the proposal meets a name, VIP or
// subnet that another write took since the draft was made: the next draft
// sees it, and either picks another or refuses with a message naming it.
func (s *Server) updateDraft(ctx context.Context, build func(d *state.Draft) error) error {
	return s.write(ctx, func() ([]*shoalpb.StoreAction, error) {
		return s.cfg.Store.Draft(build)
	}, state.ErrVersionConflict, state.ErrExists)
}

// write is the loop of update and updateDraft: collect builds the actions
// from a fresh read, and a proposal refused with one of retryOn is built
// again.
func (s *Server) write(ctx context.Context, collect func() ([]*shoalpb.StoreAction, error), retryOn ...error) error {
	var unlock func()
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	var start time.Time // of the first proposal
	for attempt := 1; ; {
		if err := s.cfg.Store.CatchUp(ctx); err != nil {
			return s.StoreError(err)
		}
		actions, err := collect()
		if err != nil {
			return s.StoreError(err)
		}
		if len(actions) == 0 {
			return nil
		}
		if unlock == nil {
			var waited bool
			if unlock, waited, err = s.locks.lock(ctx, objectKeys(actions)); err != nil {
				return s.StoreError(err)
			}
			if waited {
				continue
			}
		}
		if start.IsZero() {
			start = s.cfg.Now()
		}
		_, err = s.cfg.Store.Propose(ctx, actions...)
		if !slices.ContainsFunc(retryOn, func(e error) bool { return errors.Is(err, e) }) || s.cfg.Now().Sub(start) >= retryFor {
			return s.StoreError(err)
		}
		select {
		case <-time.After(retryBackoff(attempt)):
		case <-ctx.Done():
			return s.StoreError(ctx.Err())
		}
		attempt++
	}
}

// retryBackoff is the wait before the attempt after attempt: uniform in
// [d/2, d], where d doubles from retryBackoffMin with every attempt, up to
// retryBackoffMax.
func retryBackoff(attempt int) time.Duration {
	d := retryBackoffMin
	for i := 1; i < attempt && d < retryBackoffMax; i++ {
		d *= 2
	}
	d = min(d, retryBackoffMax)
	return d/2 + rand.N(d/2+1)
}

// StoreError maps store failures to gRPC statuses a user can act on.
func (s *Server) StoreError(err error) error {
	switch {
	case err == nil:
		return nil
	case status.Code(err) != codes.Unknown:
		return err
	case errors.Is(err, state.ErrNoLeader):
		return status.Error(codes.Unavailable, s.quorumLost())
	case errors.Is(err, state.ErrLeadershipLost):
		return status.Error(codes.Unavailable, s.leadershipLost())
	case errors.Is(err, state.ErrVersionConflict):
		return status.Error(codes.Aborted, "the object changed while this request was applied; retry")
	case errors.Is(err, state.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, state.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, state.ErrInUse):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// quorumLost explains a write that found no leader: how many managers are
// missing and how to recover.
func (s *Server) quorumLost() string {
	unreachable, voters, err := s.unreachableManagers()
	if err != nil {
		return "no Raft leader: this manager cannot reach a quorum of managers; check that the other managers are running"
	}
	dataDir := s.cfg.DataDir
	if dataDir == "" {
		dataDir = "DIR"
	}
	return fmt.Sprintf("quorum lost: %d of %d managers are unreachable (a quorum needs %d); bring them back, "+
		"or run 'shoal daemon --force-new-cluster --data-dir %s' on a surviving manager to continue as a one-manager cluster with all state kept",
		unreachable, voters, voters/2+1, dataDir)
}

// leadershipLost explains a write that was in flight when this manager
// stopped being the leader, adding the quorum explanation when that is why.
func (s *Server) leadershipLost() string {
	msg := "this manager lost its leadership while the change was being committed, so it may or may not have been applied; check before retrying"
	if unreachable, voters, err := s.unreachableManagers(); err == nil && voters-unreachable < voters/2+1 {
		msg += "; " + s.quorumLost()
	}
	return msg
}

// unreachableManagers counts the Raft voters this manager cannot reach.
// Gossip may not have declared a just-killed manager dead yet, so each other
// manager's Raft port is probed as well.
func (s *Server) unreachableManagers() (unreachable, voters int, err error) {
	members, err := s.cfg.Store.Members()
	if err != nil {
		return 0, 0, err
	}
	reachable := make(chan bool, len(members))
	for _, m := range members {
		if !m.Voter {
			continue
		}
		voters++
		go func() {
			reachable <- m.ID == s.cfg.NodeID || (s.cfg.Liveness.Alive(m.ID) && dialable(m.Addr))
		}()
	}
	if voters == 0 {
		return 0, 0, errors.New("no Raft voters known")
	}
	for range voters {
		if !<-reachable {
			unreachable++
		}
	}
	return unreachable, voters, nil
}

// dialable reports whether a TCP connection to addr opens within a short time.
func dialable(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
