package orchestrator

import (
	"slices"
	"time"

	shoalpb "shoal/proto"
)

// rollingUpdate replaces live tasks made from another task spec under the
// rollout's config (servicespec.RolloutConfig; docs/releases.md, "Rules of a
// rollout"), given the service's live units and how many units it wants.
//
// A unit is done when its task has the current spec and is ready, in
// progress while its replacement (a current task in a unit that held an
// older one) is not ready yet and has not failed, and to do while it holds
// an outdated task. At most parallelism units are in progress (0: all), and
// a unit starts only delay_ms after the last replacement became ready.
// stop-first shuts the old task down in the plan that creates the
// replacement; start-first creates the replacement beside it, and keepOne
// shuts the old one down once the replacement is ready (a task that is not
// ready serves nothing and is stopped first either way). Outdated tasks not
// yet running go first, units whose replacement failed last.
//
// While canaries wait for promotion (rollout.canaryPhase), only
// update_config.canary units get replacements, start-first, and the state
// is CANARY; auto_promote_ms after they are all ready the plan promotes them.
// A rollout under way whose units are all done completes (rollout.complete).
// Units whose task is on a drained node are left to drain.
func (b *builder) rollingUpdate(live []unitState, units int) {
	r := b.ro
	var todo []unitState
	inProgress, done := 0, 0
	canaries, canariesReady := 0, 0
	var lastReady time.Time // latest ready since of a replacement (canary)
	for _, st := range live {
		t := st.task
		switch {
		case b.onDrained(t):
			continue
		case b.outdated(t):
			todo = append(todo, st)
			continue
		case !isReady(t):
			if (st.old != nil || replacesOlder(st.u, t)) && !r.failed[t.GetId()] {
				inProgress++
			}
		case st.old == nil:
			done++
		}
		if !r.since(t) && st.old == nil {
			continue
		}
		canaries++ // a replacement, or a task held beside its predecessor
		if isReady(t) {
			canariesReady++
			if at := t.GetStatus().GetTimestamp().AsTime(); at.After(lastReady) {
				lastReady = at
			}
		}
	}
	if len(todo) > 0 || r.active() {
		// A replacement becoming ready moves the rollout on.
		b.plan.RunningMatters = true
	}
	if !r.moves() {
		return
	}
	b.orderTodo(todo)
	if r.canaryPhase() {
		b.canaries(todo, canaries, canaries == canariesReady, lastReady)
		return
	}
	if r.state() == shoalpb.UpdateState_UPDATE_STATE_CANARY { // canary set to 0 meanwhile
		r.change().State = shoalpb.UpdateState_UPDATE_STATE_UPDATING
	}
	budget := len(todo)
	if p := int(r.cfg.GetParallelism()); p > 0 {
		budget = min(budget, p-inProgress)
	}
	if delay := time.Duration(r.cfg.GetDelayMs()) * time.Millisecond; budget > 0 && delay > 0 && !lastReady.IsZero() {
		if next := lastReady.Add(delay); b.now.Before(next) {
			b.wakeAt(next)
			budget = 0
		}
	}
	for _, st := range todo[:max(0, budget)] {
		b.replace(st, r.cfg.GetOrder())
	}
	if len(todo) == 0 && inProgress == 0 && done == units {
		b.complete(lastReady)
	}
}

// orderTodo sorts the units to do: outdated tasks not yet running first
// (nothing is lost by replacing them), units whose earlier replacement
// failed last, unit order otherwise.
func (b *builder) orderTodo(todo []unitState) {
	if len(todo) < 2 {
		return
	}
	rank := func(st unitState) int {
		n := 0
		if isRunning(st.task) {
			n++
		}
		if len(b.ro.failed) > 0 && slices.ContainsFunc(st.u.tasks, func(t *shoalpb.Task) bool { return b.ro.failed[t.GetId()] }) {
			n += 2
		}
		return n
	}
	slices.SortStableFunc(todo, func(x, y unitState) int { return rank(x) - rank(y) })
}

// replace creates the replacement of unit st's outdated task: beside it
// (start-first, when the old task is ready and serving), or in its place.
func (b *builder) replace(st unitState, order shoalpb.UpdateOrder) {
	if order != shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST || !isReady(st.task) {
		b.shutdown(st.task, "")
	}
	b.create(st.u.slot, st.u.nodeID)
}

// canaries runs the canary phase: the state is CANARY, update_config.canary
// units hold a replacement beside their old task (canaries counts those
// that do; allReady says whether they are all ready, lastReady since when),
// and auto_promote_ms after the canaries are all ready the plan promotes
// them: promoted, state UPDATING.
func (b *builder) canaries(todo []unitState, canaries int, allReady bool, lastReady time.Time) {
	r := b.ro
	if r.state() == shoalpb.UpdateState_UPDATE_STATE_UPDATING {
		r.change().State = shoalpb.UpdateState_UPDATE_STATE_CANARY
	}
	want := min(int(r.cfg.GetCanary()), canaries+len(todo))
	for _, st := range todo[:max(0, want-canaries)] {
		b.replace(st, shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST)
	}
	wait := time.Duration(r.cfg.GetAutoPromoteMs()) * time.Millisecond
	if canaries < want || !allReady || wait <= 0 {
		return
	}
	if at := lastReady.Add(wait); b.now.Before(at) {
		b.wakeAt(at)
		return
	}
	st := r.change()
	st.Promoted = true
	st.State = shoalpb.UpdateState_UPDATE_STATE_UPDATING
	st.Message = "canaries promoted: ready for " + wait.String()
}

// replacesOlder reports whether u held a task of an older spec version and
// another task spec than t.
func replacesOlder(u *unit, t *shoalpb.Task) bool {
	for _, o := range u.tasks {
		if o.GetSpecVersion() < t.GetSpecVersion() && !sameTaskSpec(o, t.GetSpec()) {
			return true
		}
	}
	return false
}
