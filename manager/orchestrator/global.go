package orchestrator

import (
	shoalpb "shoal/proto"
	"shoal/scheduler"
)

// global reconciles a global service: one runnable task on every node that
// is eligible for its spec (scheduler.Eligible: ready, active, constraints).
//
// Tasks on down or removed nodes are orphaned and those on drained nodes
// shut down (evacuate); tasks on ready, active nodes that no longer meet the
// constraints are shut down; paused nodes and nodes whose state is not known
// yet keep what they run and get nothing new. An eligible node without a
// task gets one, pinned to it (node_id set, status PENDING: the scheduler
// still checks resources and ports). Live tasks are then rolled to the
// current spec under the service's update config.
func (b *builder) global(tasks []*shoalpb.Task) {
	spec := b.svc.GetSpec().GetTask()
	var live []unitState
	units := 0
	for _, u := range unitsByNode(tasks, b.nodes) {
		b.evacuate(u, nil)
		if !b.nodeRuns(u, spec) {
			continue
		}
		units++
		st, ok := b.classify(u, false)
		switch {
		case !ok:
			b.create(0, u.nodeID)
		case st.kind == unitLive:
			live = append(live, st)
		case st.kind == unitRestart:
			b.refill(st)
		}
	}
	b.rollingUpdate(live, units)
}

// nodeRuns reports whether the node of u, a unit of a global service or
// job, may run the service's task. A node that may not has its unit retired,
// except a paused node or one whose state is not known yet, which keeps what
// it runs.
func (b *builder) nodeRuns(u *unit, spec *shoalpb.TaskSpec) bool {
	node := b.nodes[u.nodeID]
	switch cond := b.condition(node); {
	case cond == nodeHolds:
		return false
	case cond != nodeUsable || !scheduler.Eligible(node, spec):
		b.retire(u)
		return false
	}
	return true
}
