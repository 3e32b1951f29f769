package membership

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
)

// record is the table's entry for one member.
type record struct {
	member Member
	// boot identifies the member's current life (see wireMeta).
	boot string
	// leaving is set when a leave intent for this boot arrived; the next
	// departure is then StateLeft rather than StateDead.
	leaving bool
}

// table is the local view of the cluster, built only from memberlist's
// callbacks. memberlist calls them while holding its own node lock, so every
// method here is short, never blocks and never calls back into memberlist.
type table struct {
	log *slog.Logger

	mu      sync.Mutex
	members map[string]*record
	events  chan Event
	closed  bool // events is closed

	// alive counts members in StateAlive, self included. memberlist's
	// broadcast queue reads it while holding the queue's lock; an atomic keeps
	// that path free of mu, so the two locks are never ordered.
	alive   atomic.Int64
	dropped atomic.Uint64
}

func newTable(log *slog.Logger, buffer int) *table {
	return &table{log: log, members: make(map[string]*record), events: make(chan Event, buffer)}
}

// setState moves r to s, keeping the alive count. Callers hold mu.
func (t *table) setState(r *record, s State) {
	if r.member.State == StateAlive && s != StateAlive {
		t.alive.Add(-1)
	}
	if r.member.State != StateAlive && s == StateAlive {
		t.alive.Add(1)
	}
	r.member.State = s
}

// emit queues ev without blocking: when the buffer is full the event is
// dropped and counted. Callers hold mu, which orders events and guards closed.
func (t *table) emit(kind EventKind, m Member) {
	if t.closed {
		return
	}
	select {
	case t.events <- Event{Kind: kind, Member: m}:
	default:
		t.dropped.Add(1)
	}
}

// join records that id is alive at addr with the given meta.
func (t *table) join(id, addr string, meta Meta, boot string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.joinLocked(id, addr, meta, boot)
}

func (t *table) joinLocked(id, addr string, meta Meta, boot string) {
	r, ok := t.members[id]
	if !ok {
		r = &record{member: Member{NodeID: id, State: StateDead}}
		t.members[id] = r
	}
	r.member.Addr, r.member.Meta = addr, meta
	r.boot, r.leaving = boot, false
	t.setState(r, StateAlive)
	t.log.Info("member joined", "node", id, "addr", addr, "role", meta.Role, "api_addr", meta.APIAddr)
	t.emit(EventJoin, r.member)
}

// update records a new meta for id.
func (t *table) update(id, addr string, meta Meta, boot string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.members[id]
	if !ok {
		// memberlist only updates nodes it announced; be safe anyway.
		t.joinLocked(id, addr, meta, boot)
		return
	}
	if r.boot != boot {
		r.leaving = false
	}
	r.member.Addr, r.member.Meta, r.boot = addr, meta, boot
	t.log.Debug("member updated", "node", id, "role", meta.Role, "api_addr", meta.APIAddr)
	t.emit(EventUpdate, r.member)
}

// depart records that id is gone: left if its leave intent was seen, else dead.
func (t *table) depart(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.members[id]
	if !ok || r.member.State == StateDead || r.member.State == StateLeft {
		return
	}
	if r.leaving {
		t.setState(r, StateLeft)
		t.log.Info("member left", "node", id, "addr", r.member.Addr)
	} else {
		t.setState(r, StateDead)
		t.log.Info("member failed", "node", id, "addr", r.member.Addr)
	}
	t.emit(EventLeave, r.member)
}

// markLeaving records a leave intent and reports whether it was news (the
// caller then re-gossips it). An intent for another boot of the node is
// stale and ignored. When the intent arrives after the member was already
// declared dead, the member is relabelled StateLeft without a new event:
// consumers treat both the same way, and the EventLeave went out already.
func (t *table) markLeaving(li leaveIntent) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.members[li.Node]
	if !ok || r.boot != li.Boot || r.leaving {
		return false
	}
	r.leaving = true
	if r.member.State == StateDead {
		t.setState(r, StateLeft)
	}
	return true
}

// snapshot returns the members accepted by keep, sorted by NodeID.
func (t *table) snapshot(keep func(Member) bool) []Member {
	t.mu.Lock()
	out := make([]Member, 0, len(t.members))
	for _, r := range t.members {
		if keep == nil || keep(r.member) {
			out = append(out, r.member)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return out
}

// get returns the member with the given id.
func (t *table) get(id string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.members[id]
	if !ok {
		return Member{}, false
	}
	return r.member, true
}

// close closes the event channel; later changes still update the table but
// emit nothing.
func (t *table) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.events)
	}
}
