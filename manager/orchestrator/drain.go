package orchestrator

import (
	"time"

	shoalpb "shoal/proto"
)

// Draining (docs/releases.md, "Draining"). A replicated service's ready
// tasks leave a drained node one at a time per service: the unit of the
// first one gets a replacement (the scheduler places it elsewhere: drained
// nodes take no new tasks), and keepOne keeps the drained task beside it as
// its predecessor until the replacement is ready, or shuts it down at once
// when the replacement cannot be placed. Tasks on the node that are not
// ready serve nothing and are shut down at once (evacuate), as are all of
// them once the node's drain deadline has passed, and every task of global
// services and jobs.

// movesOneByOne reports whether t, a runnable task on drained node n, stays
// until it is moved by drain: a ready task of a replicated service whose
// node's drain deadline has not passed. Such a task makes the plan depend on
// readiness (the replacement's, and its own).
func (b *builder) movesOneByOne(t *shoalpb.Task, n *shoalpb.Node) bool {
	if b.ro == nil || b.svc.GetSpec().GetMode() != shoalpb.ServiceMode_SERVICE_MODE_REPLICATED {
		return false
	}
	b.plan.RunningMatters = true
	return isReady(t) && !b.drainDeadlinePassed(n)
}

// drainDeadlinePassed reports whether drained node n has held its tasks for
// its spec's drain_deadline_ms since drain_started_at; the plan wakes when
// it will. No deadline, or no known start, never passes.
func (b *builder) drainDeadlinePassed(n *shoalpb.Node) bool {
	ms := n.GetSpec().GetDrainDeadlineMs()
	start := n.GetDrainStartedAt()
	if ms <= 0 || start == nil {
		return false
	}
	at := start.AsTime().Add(time.Duration(ms) * time.Millisecond)
	if b.now.Before(at) {
		b.wakeAt(at)
		return false
	}
	return true
}

// drain starts the move of the next task that a replicated service keeps on
// a drained node, unless a move is under way (a unit holds a drained task
// beside its replacement): the unit gets a new task, the drained one stays
// until keepOne lets it go.
func (b *builder) drain(live []unitState) {
	var next *unitState
	for i := range live {
		st := &live[i]
		switch {
		case st.old != nil && b.onDrained(st.old):
			return
		case next == nil && st.old == nil && b.onDrained(st.task):
			next = st
		}
	}
	if next != nil {
		b.create(next.u.slot, "")
	}
}
