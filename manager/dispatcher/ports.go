package dispatcher

import (
	"cmp"
	"slices"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// Ports a node cannot serve (NodeStatus.port_errors): every heartbeat
// carries the agent's current set; the dispatcher keeps it on the session
// and the liveness pass stores it on the node in its batched write, so a
// change costs one entry in a write that happens anyway and an unchanged
// set costs no write at all. A node that is not ready serves nothing and
// keeps no errors; a node with a new session keeps its stored set until
// its first heartbeat says otherwise (a new leader does not clear and
// write them again).

// recordPortErrors keeps the set a heartbeat reported and wakes the liveness
// pass when it differs from the session's last one.
func (d *Dispatcher) recordPortErrors(sess *session, reported []*shoalpb.PortError) {
	if last := sess.portErrors.Load(); last != nil && samePortErrors(*last, reported) {
		return
	}
	set := make([]*shoalpb.PortError, len(reported))
	for i, pe := range reported {
		set[i] = proto.Clone(pe).(*shoalpb.PortError)
	}
	slices.SortFunc(set, comparePortErrors)
	sess.portErrors.Store(&set)
	d.kickLiveness()
}

// wantPortErrors is the set the node should store for verdict v, and
// whether to store it at all (false: keep what is stored).
func wantPortErrors(v verdict) ([]*shoalpb.PortError, bool) {
	if v.state != shoalpb.NodeState_NODE_STATE_READY || v.sess == nil {
		return nil, true
	}
	if set := v.sess.portErrors.Load(); set != nil {
		return *set, true
	}
	return nil, false
}

// samePortErrors compares two sets regardless of order.
func samePortErrors(a, b []*shoalpb.PortError) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, comparePortErrors)
	slices.SortFunc(b, comparePortErrors)
	return slices.EqualFunc(a, b, func(x, y *shoalpb.PortError) bool { return comparePortErrors(x, y) == 0 })
}

func comparePortErrors(a, b *shoalpb.PortError) int {
	return cmp.Or(cmp.Compare(a.GetPort(), b.GetPort()), cmp.Compare(a.GetProtocol(), b.GetProtocol()), cmp.Compare(a.GetError(), b.GetError()))
}
