package orchestrator

import (
	shoalpb "shoal/proto"
)

// MaxBatch is the most store actions one Propose carries.
const MaxBatch = 200

// Actions turns a plan into store actions: first the UPDATE of the service,
// if the plan writes it, then a CREATE per new task, an UPDATE per changed
// task, a DELETE per deleted task. Updates carry the version that was read,
// so a newer write (by the dispatcher, or controlapi for the service) makes
// them fail with a version conflict instead of being overwritten.
func (p Plan) Actions() []*shoalpb.StoreAction {
	out := make([]*shoalpb.StoreAction, 0, p.Writes())
	if p.Service != nil {
		out = append(out, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
			Target: &shoalpb.StoreAction_Service{Service: p.Service}})
	}
	for _, t := range p.Create {
		out = append(out, taskAction(shoalpb.StoreActionKind_STORE_ACTION_CREATE, t))
	}
	for _, list := range [][]*shoalpb.Task{p.Orphan, p.Shutdown, p.Remove} {
		for _, t := range list {
			out = append(out, taskAction(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, t))
		}
	}
	for _, id := range p.Delete {
		out = append(out, taskAction(shoalpb.StoreActionKind_STORE_ACTION_DELETE, &shoalpb.Task{Id: id}))
	}
	return out
}

func taskAction(kind shoalpb.StoreActionKind, t *shoalpb.Task) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{Kind: kind, Target: &shoalpb.StoreAction_Task{Task: t}}
}

// batch is one Propose: its actions and the services they come from (whose
// reconciliation is retried when the batch fails).
type batch struct {
	actions  []*shoalpb.StoreAction
	services []string
}

// onlyCreates reports whether every action of b creates a task.
func (b batch) onlyCreates() bool {
	for _, a := range b.actions {
		if a.GetKind() != shoalpb.StoreActionKind_STORE_ACTION_CREATE {
			return false
		}
	}
	return true
}

// batcher groups the actions of several services into batches of at most
// MaxBatch actions. A service's actions share a batch whenever they fit in
// one, so a restart's shutdown and its replacement commit together.
type batcher struct {
	batches []batch
}

// add appends the actions of service (may be "" for scheduling updates).
func (b *batcher) add(service string, actions []*shoalpb.StoreAction) {
	for len(actions) > 0 {
		last := len(b.batches) - 1
		if last < 0 || len(b.batches[last].actions)+min(len(actions), MaxBatch) > MaxBatch {
			b.batches = append(b.batches, batch{})
			last++
		}
		cur := &b.batches[last]
		n := min(len(actions), MaxBatch-len(cur.actions))
		cur.actions = append(cur.actions, actions[:n]...)
		if service != "" && (len(cur.services) == 0 || cur.services[len(cur.services)-1] != service) {
			cur.services = append(cur.services, service)
		}
		actions = actions[n:]
	}
}
