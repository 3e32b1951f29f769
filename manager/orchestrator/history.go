package orchestrator

import (
	"slices"

	shoalpb "shoal/proto"
)

// reapHistory deletes each unit's dead tasks beyond the newest keep, where
// keep is the cluster's task history limit, raised to max_attempts+1 so that
// restart attempts stay countable. Tasks orphaned by this plan count as the
// newest; tasks this plan changes are kept; undecided tasks (a pending or
// refused restart, a job's completion of the current iteration) are never
// deleted, as the unit's state depends on them. Global services keep no
// history for removed nodes.
func (b *builder) reapHistory(tasks []*shoalpb.Task) {
	keep := b.settings.historyLimit()
	if m := b.svc.GetSpec().GetTask().GetRestart().GetMaxAttempts(); m > 0 && m+1 > uint64(keep) {
		keep = int(m + 1)
	}
	var units []*unit
	global := false
	switch b.svc.GetSpec().GetMode() {
	case shoalpb.ServiceMode_SERVICE_MODE_GLOBAL, shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
		units, global = unitsByNode(tasks, nil), true
	default:
		units = unitsBySlot(tasks)
	}
	orphaned := map[string]bool{}
	for _, t := range b.plan.Orphan {
		orphaned[t.GetId()] = true
	}
	for _, u := range units {
		kept := 0
		var dead []*shoalpb.Task
		for _, t := range u.tasks {
			switch {
			case orphaned[t.GetId()]:
				kept++
			case isDead(t):
				dead = append(dead, t)
			}
		}
		// The history of a removed node is of no use: it all goes.
		gone := global && b.nodes[u.nodeID] == nil
		if !gone && len(dead)+kept <= keep {
			continue
		}
		slices.SortFunc(dead, newestFirst)
		for _, t := range dead {
			if b.touched[t.GetId()] || (!gone && (kept < keep || b.protected(t))) {
				kept++
				continue
			}
			b.del(t)
		}
	}
}

// protected reports whether dead task t must stay: it is undecided and, for
// a job, of the current iteration.
func (b *builder) protected(t *shoalpb.Task) bool {
	return isUndecided(t) && (!b.isJob() || b.currentIteration(t))
}

// removed handles the tasks of a removed service: a task that is dead, never
// got a node, or whose node is down or gone is deleted (nobody will stop or
// report it); any other is set to desired REMOVE, so its agent stops it, and
// deleted once it is dead.
func (b *builder) removed(tasks []*shoalpb.Task) {
	for _, t := range tasks {
		cond := b.condition(b.nodes[t.GetNodeId()])
		if isDead(t) || t.GetNodeId() == "" || cond == nodeDown || cond == nodeGone {
			b.del(t)
			continue
		}
		b.remove(t)
	}
}
