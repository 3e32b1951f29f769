package membership

import (
	"log/slog"
	"sync"

	"github.com/hashicorp/memberlist"
)

// delegate receives memberlist's callbacks. It lives apart from Gossip so
// that memberlist's interfaces do not become part of Gossip's API.
//
// memberlist calls the Event and Conflict methods with its node lock held and
// Delegate methods from its network goroutines; each method here is quick,
// never blocks, and never calls memberlist (which would deadlock).
type delegate struct {
	t     *table
	queue *memberlist.TransmitLimitedQueue
	log   *slog.Logger

	metaMu sync.Mutex
	meta   []byte // encoded local wireMeta, served by NodeMeta
}

var (
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
)

// node copies what the table needs out of memberlist's node, which memberlist
// keeps changing after the callback returns.
func (d *delegate) node(n *memberlist.Node) (id, addr string, meta Meta, boot string) {
	meta, boot, err := decodeMeta(n.Meta)
	if err != nil {
		d.log.Warn("unreadable gossip meta; listing the node without it", "node", n.Name, "err", err)
	}
	return n.Name, n.Address(), meta, boot
}

// NotifyJoin implements memberlist.EventDelegate.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	d.t.join(d.node(n))
}

// NotifyUpdate implements memberlist.EventDelegate.
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	d.t.update(d.node(n))
}

// NotifyLeave implements memberlist.EventDelegate. memberlist calls it both
// for a dead node and for one that left; the table tells them apart by the
// leave intent.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.t.depart(n.Name)
}

// NotifyConflict implements memberlist.ConflictDelegate: two nodes claim the
// same NodeID from different addresses. memberlist keeps the first.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.log.Warn("two nodes gossip with the same node id; the second is ignored",
		"node", existing.Name, "addr", existing.Address(), "conflicting_addr", other.Address())
}

// NodeMeta implements memberlist.Delegate. The meta was checked against
// memberlist.MetaMaxSize when it was set.
func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}

func (d *delegate) setMeta(b []byte) {
	d.metaMu.Lock()
	d.meta = b
	d.metaMu.Unlock()
}

// NotifyMsg implements memberlist.Delegate: a user message gossiped by a
// peer. The only kind is the leave intent, re-gossiped the first time it is
// seen.
func (d *delegate) NotifyMsg(msg []byte) {
	li, ok := decodeLeaveIntent(msg)
	if !ok {
		return
	}
	if d.t.markLeaving(li) {
		d.queue.QueueBroadcast(newIntentBroadcast(li, nil))
	}
}

// GetBroadcasts implements memberlist.Delegate: piggybacks queued leave
// intents on memberlist's own gossip.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate; the push/pull carries nothing
// beyond memberlist's own state.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate; see LocalState.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}
