package orchestrator

import shoalpb "shoal/proto"

// A job runs to completion. Its run is identified by the service's
// job_iteration (an update of a job starts a new iteration); only tasks of the
// current iteration count, and runnable tasks of older ones are shut down. A
// unit is done once it holds a COMPLETE task of the current iteration; done
// units are never run again. Failed tasks go through the restart policy
// (whose ANY never restarts a success). Jobs are not rolled: a new spec means
// a new iteration.

// replicatedJob reconciles a replicated job: slots 1..replicas each need one
// completion, with at most max_concurrent (0: replicas) tasks runnable at
// once. Free slots and due restarts start lowest slot first as the
// concurrency allows; a task ending frees room (and its event reconciles
// again).
func (b *builder) replicatedJob(tasks []*shoalpb.Task) {
	want := b.svc.GetSpec().GetReplicas()
	limit := b.svc.GetSpec().GetMaxConcurrent()
	if limit == 0 {
		limit = want
	}
	current := b.currentIteration
	bySlot := map[uint64]*unit{}
	for _, u := range unitsBySlot(tasks) {
		b.evacuate(u, current)
		b.retireOlderIterations(u)
		if u.slot == 0 || u.slot > want {
			b.retire(u)
			continue
		}
		bySlot[u.slot] = u
	}
	var running uint64
	var ready []unitState
	for slot := uint64(1); slot <= want; slot++ {
		u := bySlot[slot]
		if u == nil {
			ready = append(ready, unitState{u: &unit{slot: slot}, kind: unitRefill})
			continue
		}
		st, ok := b.classifyJobUnit(u)
		switch {
		case !ok:
			ready = append(ready, unitState{u: u, kind: unitRefill})
		case st.kind == unitLive:
			running++
		case st.kind == unitRestart:
			ready = append(ready, st)
		}
	}
	for _, st := range ready {
		if running >= limit {
			break
		}
		b.refill(st)
		running++
	}
}

// globalJob reconciles a global job: every eligible node needs one
// completion of the current iteration. Node conditions work as for global
// services.
func (b *builder) globalJob(tasks []*shoalpb.Task) {
	spec := b.svc.GetSpec().GetTask()
	for _, u := range unitsByNode(tasks, b.nodes) {
		b.evacuate(u, b.currentIteration)
		b.retireOlderIterations(u)
		if !b.nodeRuns(u, spec) {
			continue
		}
		st, ok := b.classifyJobUnit(u)
		switch {
		case !ok:
			b.create(0, u.nodeID)
		case st.kind == unitRestart:
			b.refill(st)
		}
	}
}

// classifyJobUnit says how a job's unit stands in the current iteration: ok
// is false when it still needs a first task (or a replacement of one that
// was orphaned or drained); done units are unitRetired.
func (b *builder) classifyJobUnit(u *unit) (st unitState, ok bool) {
	for _, t := range u.tasks {
		if b.currentIteration(t) && t.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_COMPLETE {
			b.retire(u)
			return unitState{u: u, kind: unitRetired, task: t}, true
		}
	}
	if live := b.live(u); len(live) > 0 {
		kept, _ := b.keepOne(u, live) // jobs hold no predecessor
		return unitState{u: u, kind: unitLive, task: kept}, true
	}
	dead := b.undecided(u, b.currentIteration)
	if dead == nil {
		return unitState{}, false
	}
	return b.deadUnit(u, dead), true
}

// currentIteration reports whether t belongs to the job's current run.
func (b *builder) currentIteration(t *shoalpb.Task) bool {
	return t.GetJobIteration() == b.svc.GetJobIteration()
}

// retireOlderIterations shuts down u's runnable tasks of older runs.
func (b *builder) retireOlderIterations(u *unit) {
	for _, t := range u.tasks {
		if isRunnable(t) && !b.currentIteration(t) {
			b.shutdown(t, "")
		}
	}
}
