package state

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// fsm is the raft.FSM over a go-memdb database.
//
// Contract (from raft.FSM): Apply is deterministic; given the same log every
// manager reaches the same store. It reads no clock, random source or disk:
// timestamps come inside the objects from the proposer, versions are the log
// index. Apply, Snapshot and Restore are called from raft's single FSM
// goroutine; readers run concurrently on immutable memdb snapshots.
type fsm struct {
	log     *slog.Logger
	db      atomic.Pointer[memdb.MemDB]
	events  *broker
	applied appliedIndex
}

func newFSM(log *slog.Logger, events *broker) *fsm {
	f := &fsm{log: log, events: events}
	f.db.Store(newDB())
	f.applied.init()
	return f
}

// Apply applies one Command (raft.FSM; raft.RecoverCluster replays the log
// through it).
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies the entries raft committed together (raft.BatchingFSM).
// Each Command is atomic on its own: a refused one changes nothing and does
// not affect the others. The response for each entry is nil or the error that
// refused it; raft hands it to that entry's proposer. Configuration entries
// are raft's own and get a nil response. The applied index moves and the
// events are published once per batch, so waiters wake once.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	responses := make([]any, len(logs))
	var events []Event
	var last uint64
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		evs, err := f.applyCommand(l.Index, l.Data)
		if err != nil {
			f.log.Debug("store command refused", "index", l.Index, "error", err)
			responses[i] = err
		}
		events = append(events, evs...)
		last = l.Index
	}
	if last != 0 {
		f.applied.set(last)
	}
	f.events.publish(events...)
	return responses
}

// applyCommand runs every action of the command in one write transaction and
// commits only if all succeed.
func (f *fsm) applyCommand(index uint64, data []byte) ([]Event, error) {
	var cmd shoalpb.Command
	if err := proto.Unmarshal(data, &cmd); err != nil {
		return nil, fmt.Errorf("%w: decode command: %w", ErrInvalidAction, err)
	}
	if len(cmd.Actions) == 0 {
		return nil, fmt.Errorf("%w: command has no actions", ErrInvalidAction)
	}
	txn := f.db.Load().Txn(true)
	defer txn.Abort() // no-op once committed
	events := make([]Event, 0, len(cmd.Actions))
	for i, a := range cmd.Actions {
		ev, err := applyAction(txn, index, a)
		if err != nil {
			return nil, fmt.Errorf("action %d of %d: %w", i+1, len(cmd.Actions), err)
		}
		events = append(events, ev)
	}
	txn.Commit()
	return events, nil
}

// applyAction checks one action against the transaction's view and applies it.
func applyAction(txn *memdb.Txn, index uint64, a *shoalpb.StoreAction) (Event, error) {
	if c, ok := a.GetTarget().(*shoalpb.StoreAction_TaskStatus); ok {
		return applyTaskStatus(txn, index, a.GetKind(), c.TaskStatus)
	}
	t, obj, err := tableFor(a)
	if err != nil {
		return Event{}, err
	}
	id := obj.GetId()
	if id == "" {
		return Event{}, fmt.Errorf("%w: %s %s: empty id", ErrInvalidAction, a.GetKind(), t.name)
	}
	raw, err := txn.First(t.name, "id", id)
	if err != nil {
		return Event{}, fmt.Errorf("read %s %q: %w", t.name, id, err)
	}
	stored, _ := raw.(object)

	var kind EventKind
	switch a.GetKind() {
	case shoalpb.StoreActionKind_STORE_ACTION_CREATE:
		if stored != nil {
			return Event{}, fmt.Errorf("%w: %s %q", ErrExists, t.name, id)
		}
		ensureMeta(obj).Version = index
		kind = EventCreate
	case shoalpb.StoreActionKind_STORE_ACTION_UPDATE:
		if stored == nil {
			return Event{}, fmt.Errorf("%w: %s %q", ErrNotFound, t.name, id)
		}
		if have, want := obj.GetMeta().GetVersion(), stored.GetMeta().GetVersion(); have != want {
			return Event{}, fmt.Errorf("%w: %s %q: update read version %d, stored version is %d",
				ErrVersionConflict, t.name, id, have, want)
		}
		meta := ensureMeta(obj)
		meta.Version = index
		if created := stored.GetMeta().GetCreatedAt(); created != nil {
			meta.CreatedAt = proto.Clone(created).(*timestamppb.Timestamp)
		}
		kind = EventUpdate
	case shoalpb.StoreActionKind_STORE_ACTION_DELETE:
		if stored == nil {
			return Event{}, fmt.Errorf("%w: %s %q", ErrNotFound, t.name, id)
		}
		if t.checkDelete != nil {
			if err := t.checkDelete(txn, stored); err != nil {
				return Event{}, err
			}
		}
		if err := txn.Delete(t.name, stored); err != nil {
			return Event{}, fmt.Errorf("delete %s %q: %w", t.name, id, err)
		}
		return Event{Kind: EventDelete, Object: stored, Index: index}, nil
	default:
		return Event{}, fmt.Errorf("%w: unknown kind %v on %s %q", ErrInvalidAction, a.GetKind(), t.name, id)
	}
	if err := checkUnique(txn, t, obj); err != nil {
		return Event{}, err
	}
	if t.check != nil {
		if err := t.check(txn, obj); err != nil {
			return Event{}, err
		}
	}
	shareTaskSpec(txn, obj)
	if err := txn.Insert(t.name, obj); err != nil {
		return Event{}, fmt.Errorf("write %s %q: %w", t.name, id, err)
	}
	return Event{Kind: kind, Object: obj, Index: index}, nil
}

// checkUnique refuses a write that would give obj the same value as another
// object in one of its table's unique secondary indexes (a service name).
func checkUnique(txn *memdb.Txn, t *table, obj object) error {
	for _, name := range t.unique {
		value, ok := (&fieldPathIndex{path: t.indexes[name]}).value(obj)
		if !ok {
			continue
		}
		raw, err := txn.First(t.name, name, value)
		if err != nil {
			return fmt.Errorf("read %s by %s: %w", t.name, name, err)
		}
		if other, _ := raw.(object); other != nil && other.GetId() != obj.GetId() {
			return fmt.Errorf("%w: %s %s %q is taken by %s", ErrExists, t.name, name, value, other.GetId())
		}
	}
	return nil
}

// view runs fn on a read transaction of the current database.
func (f *fsm) view(fn func(tx ReadTx)) {
	txn := f.db.Load().Txn(false)
	defer txn.Abort()
	fn(readTx{txn: txn})
}

// appliedIndex is the index of the last log entry the FSM applied (or of the
// snapshot it restored), with a broadcast to waiters on every change.
type appliedIndex struct {
	mu      sync.Mutex
	index   uint64
	changed chan struct{} // closed and replaced on every set
}

func (a *appliedIndex) init() { a.changed = make(chan struct{}) }

func (a *appliedIndex) set(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index = index
	close(a.changed)
	a.changed = make(chan struct{})
}

// get returns the index and a channel closed at the next change.
func (a *appliedIndex) get() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index, a.changed
}
