// Package state is shoal's replicated store: a go-memdb database kept
// identical on every manager by hashicorp/raft.
//
// Writes go through Propose, which applies a batch of StoreActions atomically
// on the leader (forwarding from followers). Reads are local and consistent
// (View); CatchUp first makes them include every write the leader has
// committed. Changes are published to watchers after they commit (Watch). The
// package also exposes the raft membership operations the manager needs.
package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultSnapshotThreshold = 8192
	DefaultTrailingLogs      = 10240
	DefaultSnapshotInterval  = 2 * time.Minute
	DefaultLeaderWait        = 3 * time.Second
)

const (
	raftDBFile      = "raft.db"
	snapshotsRetain = 2
	logCacheSize    = 512
	// boltOpenTimeout bounds the wait for raft.db's file lock, so a second
	// Open (or HasState) on a directory in use fails instead of hanging.
	boltOpenTimeout = time.Second
)

// Forwarder is a follower's line to the leader. The node wiring implements
// it over gRPC (RaftMembership). Errors from the leader's store should come
// back so that errors.Is still matches this package's sentinels (ErrNotLeader
// and ErrNoLeader make the caller look for the leader again).
type Forwarder interface {
	// Forward sends a marshalled shoalpb.Command to the leader and returns
	// the index it was applied at; the leader side calls Store.ApplyCommand.
	Forward(ctx context.Context, leaderID, leaderAddr string, cmd []byte) (uint64, error)
	// ReadIndex asks the leader which index a replica must have applied to
	// hold every write the leader has committed; the leader side calls
	// Store.ReadIndex.
	ReadIndex(ctx context.Context, leaderID, leaderAddr string) (uint64, error)
}

// Config configures Open.
type Config struct {
	// NodeID is the raft ServerID of this manager.
	NodeID string
	// Dir holds raft.db (raft-boltdb log and stable store) and snapshots/.
	// Usually <data-dir>/raft. It is created if missing.
	Dir string
	// Addr is the raft address peers dial (raft ServerAddress).
	Addr string
	// StreamLayer carries raft traffic (TLS in production, plain TCP in
	// tests). The store owns it from Open on: it is closed by Close, or by
	// Open if Open fails after starting the transport.
	StreamLayer raft.StreamLayer
	// Bootstrap makes this node a one-voter cluster if Dir holds no state;
	// it is ignored otherwise.
	Bootstrap bool
	// ForceNewCluster rewrites the raft configuration to this node alone
	// (raft.RecoverCluster), keeping all state, before starting. Dir must
	// hold state.
	ForceNewCluster bool
	// Forwarder forwards follower writes to the leader; nil makes Propose
	// on a follower return ErrNotLeader.
	Forwarder Forwarder
	// Logger receives the store's and raft's logs; nil means slog.Default().
	Logger *slog.Logger

	// Snapshot tuning; zero means DefaultSnapshotThreshold,
	// DefaultTrailingLogs and DefaultSnapshotInterval.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	// LeaderWait is how long Propose waits for a leader before failing with
	// ErrNoLeader; zero means DefaultLeaderWait.
	LeaderWait time.Duration
}

// Store is one manager's replica of the store. Its methods are safe for
// concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	fsm    *fsm
	events *broker
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	bolt   *raftboltdb.BoltStore
	logs   raft.LogStore // bolt behind the log cache
	reads  readIndexer   // a follower's shared read-index requests

	leaderCh  chan bool
	closing   chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the store in cfg.Dir and starts raft. It returns
// once raft runs, not once the log is replayed: a restarted node catches up
// in the background (use Barrier on the leader, or WaitApplied).
func Open(cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: create %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "state", "node", cfg.NodeID),
		leaderCh: make(chan bool, 1),
		closing:  make(chan struct{}),
	}
	s.events = newBroker(s.log)
	s.fsm = newFSM(s.log, s.events)
	if err := s.start(); err != nil {
		if s.trans != nil {
			_ = s.trans.Close()
		}
		if s.bolt != nil {
			_ = s.bolt.Close()
		}
		return nil, err
	}
	return s, nil
}

func (c *Config) setDefaults() error {
	switch {
	case c.NodeID == "":
		return errors.New("state: Config.NodeID is required")
	case c.Dir == "":
		return errors.New("state: Config.Dir is required")
	case c.Addr == "":
		return errors.New("state: Config.Addr is required")
	case c.StreamLayer == nil:
		return errors.New("state: Config.StreamLayer is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.LeaderWait == 0 {
		c.LeaderWait = DefaultLeaderWait
	}
	return nil
}

// openBolt opens raft.db with a bounded wait for its file lock.
func openBolt(dir string) (*raftboltdb.BoltStore, error) {
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, raftDBFile),
		BoltOptions: &bolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", filepath.Join(dir, raftDBFile), err)
	}
	return db, nil
}

// HasState reports whether dir holds raft data (a term, log entries or a
// snapshot). It must not be called on the directory of an open Store.
func HasState(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, raftDBFile)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	db, err := openBolt(dir)
	if err != nil {
		return false, err
	}
	defer db.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetain, hclog.NewNullLogger())
	if err != nil {
		return false, fmt.Errorf("state: open snapshots: %w", err)
	}
	ok, err := raft.HasExistingState(db, db, snaps)
	if err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	return ok, nil
}

// Close shuts raft down, closes raft.db and every watch channel. Later calls
// return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		err := s.raft.Shutdown().Error() // also closes the transport
		s.trans.CloseStreams()
		s.wg.Wait()
		s.events.close()
		if cerr := s.bolt.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close raft.db: %w", cerr))
		}
		if err != nil {
			s.closeErr = fmt.Errorf("state: close: %w", err)
		}
		s.log.Info("store closed")
	})
	return s.closeErr
}

// isClosed reports whether Close has begun.
func (s *Store) isClosed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// View runs fn on a consistent snapshot of the local store. Objects read
// through tx are shared and must not be modified: proto.Clone them before
// building an update.
func (s *Store) View(fn func(tx ReadTx)) { s.fsm.view(fn) }

// Watch streams the events published after each commit, in commit order,
// including an EventReset when the store is replaced by a snapshot. The
// channel is closed when ctx ends, when the store closes, or when the watcher
// falls more than 65,536 events behind; in the last case the caller must re-read
// (View) and watch again. Apply never waits for watchers.
func (s *Store) Watch(ctx context.Context) <-chan Event { return s.events.subscribe(ctx) }

// AppliedIndex returns the index of the last command applied to the local
// store (or of the snapshot it was restored from).
func (s *Store) AppliedIndex() uint64 {
	index, _ := s.fsm.applied.get()
	return index
}

// WaitApplied waits until the local store has applied index, so that a View
// afterwards sees that write.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		applied, changed := s.fsm.applied.get()
		if applied >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, applied, ctx.Err())
		case <-s.closing:
			return fmt.Errorf("wait for index %d: %w", index, ErrClosed)
		}
	}
}
