package orchestrator

import (
	"cmp"
	"slices"
	"strings"
	"time"

	shoalpb "shoal/proto"
)

// isDead reports whether t's status is terminal: COMPLETE, SHUTDOWN, FAILED,
// REJECTED or ORPHANED.
func isDead(t *shoalpb.Task) bool {
	return t.GetStatus().GetState() >= shoalpb.TaskState_TASK_STATE_COMPLETE
}

// isRunnable reports whether t is wanted and may still run: desired RUNNING
// and not dead.
func isRunnable(t *shoalpb.Task) bool {
	return t.GetDesiredState() == shoalpb.TaskState_TASK_STATE_RUNNING && !isDead(t)
}

// isUndecided reports whether t is dead while still desired RUNNING: its
// unit's restart is pending or refused (see the package doc).
func isUndecided(t *shoalpb.Task) bool {
	return t.GetDesiredState() == shoalpb.TaskState_TASK_STATE_RUNNING && isDead(t)
}

// isRunning reports whether t's status is RUNNING.
func isRunning(t *shoalpb.Task) bool {
	return t.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_RUNNING
}

// newestFirst orders tasks by status timestamp, then creation time, then ID,
// newest first. Timestamps come from agents' and managers' clocks, so the
// order is a best effort; the reconcilers only use it to pick among tasks
// that should not coexist.
func newestFirst(a, b *shoalpb.Task) int {
	if c := cmp.Compare(b.GetStatus().GetTimestamp().AsTime().UnixNano(),
		a.GetStatus().GetTimestamp().AsTime().UnixNano()); c != 0 {
		return c
	}
	if c := cmp.Compare(b.GetMeta().GetCreatedAt().AsTime().UnixNano(),
		a.GetMeta().GetCreatedAt().AsTime().UnixNano()); c != 0 {
		return c
	}
	return strings.Compare(b.GetId(), a.GetId())
}

// unit is where a service wants one task: a slot or a node.
type unit struct {
	slot   uint64
	nodeID string
	tasks  []*shoalpb.Task
}

// unitsBySlot groups tasks by slot, in slot order; each unit keeps its tasks
// in input order. It sorts instead of hashing: a large service's pass does a
// handful of allocations here instead of two per slot.
func unitsBySlot(tasks []*shoalpb.Task) []*unit {
	type keyed struct {
		slot uint64
		i    int
	}
	keys := make([]keyed, len(tasks))
	for i, t := range tasks {
		keys[i] = keyed{t.GetSlot(), i}
	}
	slices.SortFunc(keys, func(a, b keyed) int {
		if c := cmp.Compare(a.slot, b.slot); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	sorted := make([]*shoalpb.Task, len(tasks))
	n := 0
	for i, k := range keys {
		sorted[i] = tasks[k.i]
		if i == 0 || k.slot != keys[i-1].slot {
			n++
		}
	}
	units := make([]unit, 0, n)
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && keys[j].slot == keys[i].slot {
			j++
		}
		units = append(units, unit{slot: keys[i].slot, tasks: sorted[i:j:j]})
		i = j
	}
	out := make([]*unit, len(units))
	for i := range units {
		out[i] = &units[i]
	}
	return out
}

// unitsByNode groups tasks by node, with an empty unit for every node in
// nodes that has no task, in node ID order.
func unitsByNode(tasks []*shoalpb.Task, nodes map[string]*shoalpb.Node) []*unit {
	byNode := map[string]*unit{}
	for id := range nodes {
		byNode[id] = &unit{nodeID: id}
	}
	for _, t := range tasks {
		u := byNode[t.GetNodeId()]
		if u == nil {
			u = &unit{nodeID: t.GetNodeId()}
			byNode[t.GetNodeId()] = u
		}
		u.tasks = append(u.tasks, t)
	}
	out := make([]*unit, 0, len(byNode))
	for _, u := range byNode {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b *unit) int { return strings.Compare(a.nodeID, b.nodeID) })
	return out
}

// live returns u's runnable tasks that this plan has not changed, best first:
// running before not yet running, current spec before outdated, newest first
// (keepOne picks among them).
// The slice is the builder's scratch space, valid until the next call.
func (b *builder) live(u *unit) []*shoalpb.Task {
	out := b.liveBuf[:0]
	for _, t := range u.tasks {
		if isRunnable(t) && !b.touched[t.GetId()] {
			out = append(out, t)
		}
	}
	b.liveBuf = out
	slices.SortFunc(out, func(x, y *shoalpb.Task) int {
		if rx, ry := isRunning(x), isRunning(y); rx != ry {
			if rx {
				return -1
			}
			return 1
		}
		if ox, oy := b.outdated(x), b.outdated(y); ox != oy {
			if oy {
				return -1
			}
			return 1
		}
		return newestFirst(x, y)
	})
	return out
}

// undecided returns u's newest dead task still desired RUNNING that this plan
// has not changed, or nil. keep filters the candidates (jobs look at the
// current iteration only); nil keeps all.
func (b *builder) undecided(u *unit, keep func(*shoalpb.Task) bool) *shoalpb.Task {
	var newest *shoalpb.Task
	for _, t := range u.tasks {
		if !isUndecided(t) || b.touched[t.GetId()] || (keep != nil && !keep(t)) {
			continue
		}
		if newest == nil || newestFirst(t, newest) < 0 {
			newest = t
		}
	}
	return newest
}

// isReady reports whether t is RUNNING and ready for traffic (its
// readiness check, else its health check, passed; TaskStatus.ready).
func isReady(t *shoalpb.Task) bool {
	return isRunning(t) && t.GetStatus().GetReady()
}

// unplaceable reports whether t waits for a node that the scheduler could
// not find: PENDING with the scheduler's explanation instead of "pending".
func unplaceable(t *shoalpb.Task) bool {
	return isPending(t) && t.GetStatus().GetMessage() != msgPending
}

// keepOne decides which of u's live tasks stay, and turns leftover undecided
// tasks into history. A unit holds one task, kept: the best live task that
// is not leaving (outdated, or on a drained node), else the best one. While
// kept is not ready, the best leaving task stays beside it as its
// predecessor, old, so that the unit keeps serving (start-first updates,
// canaries until promotion, tasks leaving a drained node: see holds). Every
// other live task is shut down.
func (b *builder) keepOne(u *unit, live []*shoalpb.Task) (kept, old *shoalpb.Task) {
	kept = live[0]
	if len(live) > 1 { // which ones are kept depends on their statuses
		b.plan.RunningMatters = true
		var succ, pred *shoalpb.Task
		for _, t := range live {
			switch {
			case !b.leaving(t):
				if succ == nil {
					succ = t
				}
			case pred == nil:
				pred = t
			}
		}
		if succ != nil {
			kept = succ
			if pred != nil && b.holds(pred, succ) {
				old = pred
			}
		}
		for _, t := range live {
			if t != kept && t != old {
				b.shutdown(t, b.leaveMessage(t))
			}
		}
	}
	for _, t := range u.tasks {
		if isUndecided(t) && !b.isCompletion(t) {
			b.shutdown(t, "")
		}
	}
	return kept, old
}

// leaving reports whether live task t is to leave its unit: it is outdated,
// or on a drained node.
func (b *builder) leaving(t *shoalpb.Task) bool {
	return b.outdated(t) || b.onDrained(t)
}

// onDrained reports whether t is on a drained node.
func (b *builder) onDrained(t *shoalpb.Task) bool {
	return b.drains && t.GetNodeId() != "" && b.condition(b.nodes[t.GetNodeId()]) == nodeDrained
}

// leaveMessage is the status message of leaving task t when it is shut down.
func (b *builder) leaveMessage(t *shoalpb.Task) string {
	if b.onDrained(t) {
		return msgNodeDrained
	}
	return ""
}

// holds reports whether pred, a leaving task, stays beside succ, its unit's
// task to keep: a task on a drained node until succ is ready or cannot be
// placed; an outdated task until succ is ready, and while the rollout's
// canaries are not promoted. Jobs and removed services hold nothing.
func (b *builder) holds(pred, succ *shoalpb.Task) bool {
	switch {
	case b.ro == nil:
		return false
	case b.onDrained(pred):
		return !isReady(succ) && !unplaceable(succ)
	}
	return !isReady(succ) || b.ro.canaryPhase()
}

// retire empties u for good: its runnable tasks are shut down and its
// undecided tasks become history, except a job's completions, which record
// that the unit is done.
func (b *builder) retire(u *unit) {
	for _, t := range u.tasks {
		if isRunnable(t) || (isUndecided(t) && !b.isCompletion(t)) {
			b.shutdown(t, "")
		}
	}
}

// isCompletion reports whether t is a successful run of a job.
func (b *builder) isCompletion(t *shoalpb.Task) bool {
	return b.isJob() && t.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_COMPLETE
}

// nodeCondition is what a node's state means for the tasks on it.
type nodeCondition int

const (
	// nodeUsable: ready and active; new tasks may go there.
	nodeUsable nodeCondition = iota
	// nodeHolds: paused, or its state is unknown or not ready yet: tasks
	// there stay as they are, no new task goes there.
	nodeHolds
	// nodeDrained: its tasks are shut down and replaced elsewhere.
	nodeDrained
	// nodeDown: its tasks are orphaned and replaced elsewhere.
	nodeDown
	// nodeGone: the node was removed; like nodeDown.
	nodeGone
)

// OrphanGrace is how long a node must have been down before its tasks are
// orphaned and replaced elsewhere. A daemon restart (an upgrade, a crash that
// systemd restarts) ends the node's session for a moment; within the grace
// the agent comes back, re-adopts its running tasks and nothing moves. The
// dispatcher's detection plus this grace stays well within the five seconds
// a dead node's tasks may take to run elsewhere.
const OrphanGrace = 2 * time.Second

// conditionOf classifies node n (nil when it does not exist) at time now. A
// node down for less than OrphanGrace holds its tasks.
func conditionOf(n *shoalpb.Node, now time.Time) nodeCondition {
	switch {
	case n == nil:
		return nodeGone
	case n.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_DOWN:
		if now.Before(orphanAt(n)) {
			return nodeHolds
		}
		return nodeDown
	case n.GetSpec().GetAvailability() == shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		return nodeDrained
	case n.GetStatus().GetState() != shoalpb.NodeState_NODE_STATE_READY,
		n.GetSpec().GetAvailability() != shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE:
		return nodeHolds
	}
	return nodeUsable
}

// orphanAt is when the tasks of down node n are orphaned: OrphanGrace after
// its status last changed (at once when that time is unknown).
func orphanAt(n *shoalpb.Node) time.Time {
	if at := n.GetStatus().GetUpdatedAt(); at != nil {
		return at.AsTime().Add(OrphanGrace)
	}
	return time.Time{}
}

// condition classifies node n for this plan; a node still within its
// OrphanGrace makes the plan wake when the grace ends.
func (b *builder) condition(n *shoalpb.Node) nodeCondition {
	c := conditionOf(n, b.now)
	if c == nodeHolds && n.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_DOWN {
		b.wakeAt(orphanAt(n))
	}
	return c
}

// evacuate handles u's tasks on nodes that went down, were removed or are
// drained: tasks not yet dead on a down or gone node are orphaned, runnable
// tasks on a drained node are shut down, except the ready tasks of a
// replicated service, which leave one by one once their replacements are
// ready (drain.go), until the node's drain deadline. It reports whether a
// runnable task left u that way (matching keep, if set), i.e. whether u must
// be refilled at once.
func (b *builder) evacuate(u *unit, keep func(*shoalpb.Task) bool) (freed bool) {
	for _, t := range u.tasks {
		if t.GetNodeId() == "" || isDead(t) || b.touched[t.GetId()] {
			continue
		}
		runnable := isRunnable(t) && (keep == nil || keep(t))
		node := b.nodes[t.GetNodeId()]
		switch b.condition(node) {
		case nodeDown:
			b.orphan(t, msgNodeDown)
		case nodeGone:
			b.orphan(t, msgNodeRemoved)
		case nodeDrained:
			if !isRunnable(t) || b.movesOneByOne(t, node) {
				continue
			}
			b.shutdown(t, msgNodeDrained)
		default:
			continue
		}
		freed = freed || runnable
	}
	return freed
}
