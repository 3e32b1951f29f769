package orchestrator

import (
	"slices"

	shoalpb "shoal/proto"
)

// updateOrder says whether a unit's old task stops before its replacement
// starts or after.
type updateOrder int

const (
	// stopFirst shuts the old task down and creates the replacement in the
	// same plan (the slot is free as soon as its task is desired SHUTDOWN).
	stopFirst updateOrder = iota
)

// updateConfig is how a service rolls to a new spec. Today every service
// gets defaultUpdateConfig; update_config (start-first, failure actions,
// monitor, rollback) will be read from the service spec here.
type updateConfig struct {
	// parallelism is how many units are replaced at once; 0 means all.
	parallelism int
	order       updateOrder
}

var defaultUpdateConfig = updateConfig{parallelism: 1, order: stopFirst}

// updateConfigOf returns the update settings of svc.
func updateConfigOf(*shoalpb.Service) updateConfig { return defaultUpdateConfig }

// rollingUpdate replaces live tasks made from another task spec, a few
// units at a time: a unit is in progress while its replacement (a task of the
// current version in a unit that held an older one) is not yet RUNNING, and
// no more than parallelism units are in progress at once. A replacement that
// dies no longer holds the rollout back: its unit goes through the restart
// policy, the rollout moves on. Outdated tasks not yet running are replaced
// first (nothing is lost by replacing them), then in unit order.
func (b *builder) rollingUpdate(live []unitState) {
	cfg := updateConfigOf(b.svc)
	var todo []unitState
	inProgress := 0
	for _, st := range live {
		switch {
		case b.outdated(st.task):
			todo = append(todo, st)
		case !isRunning(st.task) && replacesOlder(st.u, st.task):
			inProgress++
		}
	}
	if len(todo) == 0 {
		return
	}
	// A replacement that starts running frees room for the next unit, and
	// outdated tasks not yet running go first.
	b.plan.RunningMatters = true
	budget := len(todo)
	if cfg.parallelism > 0 {
		budget = cfg.parallelism - inProgress
	}
	slices.SortStableFunc(todo, func(a, b unitState) int {
		ra, rb := isRunning(a.task), isRunning(b.task)
		switch {
		case ra == rb:
			return 0
		case rb:
			return -1
		}
		return 1
	})
	for _, st := range todo[:max(0, min(budget, len(todo)))] {
		switch cfg.order {
		case stopFirst:
			b.shutdown(st.task, "")
			b.create(st.u.slot, st.u.nodeID)
		}
	}
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
