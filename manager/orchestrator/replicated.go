package orchestrator

import (
	"cmp"
	"container/heap"
	"slices"
	"strings"

	shoalpb "shoal/proto"
)

// unitKind says how a unit that counts towards the service's replicas is
// occupied.
type unitKind int

const (
	// unitLive: it has a runnable task.
	unitLive unitKind = iota
	// unitRefill: its task was orphaned or drained in this plan; refill at
	// once.
	unitRefill
	// unitRestart: its task died and the restart is due.
	unitRestart
	// unitWaiting: its task died and the restart delay has not passed.
	unitWaiting
	// unitRetired: its task died and the policy refuses a restart.
	unitRetired
)

// unitState is a unit that counts towards the service's replicas.
type unitState struct {
	u    *unit
	kind unitKind
	// task is the live task kept (unitLive) or the undecided dead task
	// (unitRestart, unitWaiting, unitRetired); nil for unitRefill.
	task *shoalpb.Task
	// old is the leaving task kept beside task until task is ready
	// (keepOne); nil if none.
	old *shoalpb.Task
}

// classify says how u is occupied, after evacuate (freed is its result).
// ok is false when u is free: no runnable task, no undecided one, not freed
// in this plan.
func (b *builder) classify(u *unit, freed bool) (st unitState, ok bool) {
	if live := b.live(u); len(live) > 0 {
		kept, old := b.keepOne(u, live)
		return unitState{u: u, kind: unitLive, task: kept, old: old}, true
	}
	if dead := b.undecided(u, nil); dead != nil {
		return b.deadUnit(u, dead), true
	}
	if freed {
		return unitState{u: u, kind: unitRefill}, true
	}
	return unitState{}, false
}

// refill creates the replacement of a unit whose restart is due or that was
// freed in this plan; the dead task it replaces becomes history.
func (b *builder) refill(st unitState) {
	if st.task != nil {
		b.shutdown(st.task, "")
	}
	b.create(st.u.slot, st.u.nodeID)
}

// replicated reconciles a replicated service: slots 1..N, each holding at
// most one runnable task.
//
// Tasks on down, removed or drained nodes leave their slots, which are
// refilled at once. Each other slot is live, restarting (or waiting, or
// retired by the restart policy) or free. When more slots are occupied than
// the service wants, scaleDown picks which go; when fewer, the lowest free
// slot numbers are filled. Tasks that ready slots keep on drained nodes then
// move one by one (drain), and live slots are rolled to the current spec
// (rollingUpdate).
func (b *builder) replicated(tasks []*shoalpb.Task) {
	units := unitsBySlot(tasks)
	occupied := make([]unitState, 0, len(units))
	used := make([]uint64, 0, len(units)) // slots occupied before scaleDown, ascending
	for _, u := range units {
		freed := b.evacuate(u, nil)
		if u.slot == 0 { // not a replicated task (left over from another mode)
			b.retire(u)
			continue
		}
		if st, ok := b.classify(u, freed); ok {
			occupied = append(occupied, st)
			used = append(used, u.slot)
		}
	}
	want := int(b.svc.GetSpec().GetReplicas())
	if extra := len(occupied) - want; extra > 0 {
		occupied = b.scaleDown(occupied, extra)
	}
	live := make([]unitState, 0, len(occupied))
	for _, st := range occupied {
		switch st.kind {
		case unitLive:
			live = append(live, st)
		case unitRefill, unitRestart:
			b.refill(st)
		}
	}
	for slot, missing := uint64(1), want-len(occupied); missing > 0; slot++ {
		for len(used) > 0 && used[0] < slot {
			used = used[1:]
		}
		if len(used) > 0 && used[0] == slot {
			continue
		}
		b.create(slot, "")
		missing--
	}
	b.drain(live)
	b.rollingUpdate(live, want)
}

// scaleDown frees n of the occupied slots and returns the others. It frees
// first the slots with nothing running (restarting, waiting, retired,
// refill), then those whose task is not yet running, then running ones; among
// tasks with a node, it takes from the node holding the most live tasks of
// the service, so the rest stay spread; ties, and tasks without a node, go
// highest slot first.
func (b *builder) scaleDown(occupied []unitState, n int) []unitState {
	b.plan.RunningMatters = true // running tasks go last
	perNode := map[string]int{}
	var classes [3][]int // indexes into occupied
	for i, st := range occupied {
		switch {
		case st.kind != unitLive:
			classes[0] = append(classes[0], i)
		case !isRunning(st.task):
			classes[1] = append(classes[1], i)
			perNode[st.task.GetNodeId()]++
		default:
			classes[2] = append(classes[2], i)
			perNode[st.task.GetNodeId()]++
		}
	}
	victims := map[int]bool{}
	for c, class := range classes {
		if len(victims) == n {
			break
		}
		for _, i := range pickSpread(occupied, class, perNode, c > 0, n-len(victims)) {
			victims[i] = true
		}
	}
	var kept []unitState
	for i, st := range occupied {
		if !victims[i] {
			kept = append(kept, st)
			continue
		}
		if st.task != nil { // a live task, or an undecided one that becomes history
			b.shutdown(st.task, "")
		}
		if st.old != nil {
			b.shutdown(st.old, b.leaveMessage(st.old))
		}
	}
	return kept
}

// pickSpread picks up to n of the candidates (indexes into occupied): those
// without a node (all of them unless byLoad) first, highest slot first; then
// from the node with the most tasks in perNode, highest slot first. perNode
// is decremented for each pick.
func pickSpread(occupied []unitState, candidates []int, perNode map[string]int, byLoad bool, n int) []int {
	slotDesc := func(i, j int) int { return cmp.Compare(occupied[j].u.slot, occupied[i].u.slot) }
	var nodeless []int
	byNode := map[string][]int{}
	for _, i := range candidates {
		if node := occupied[i].task.GetNodeId(); byLoad && node != "" {
			byNode[node] = append(byNode[node], i)
		} else {
			nodeless = append(nodeless, i)
		}
	}
	slices.SortFunc(nodeless, slotDesc)
	picked := append([]int(nil), nodeless[:min(n, len(nodeless))]...)
	h := &nodeHeap{perNode: perNode, slot: func(i int) uint64 { return occupied[i].u.slot }}
	for node, list := range byNode {
		slices.SortFunc(list, slotDesc)
		h.items = append(h.items, &nodeItem{node: node, slots: list})
	}
	heap.Init(h)
	for len(picked) < n && h.Len() > 0 {
		top := h.items[0]
		picked = append(picked, top.slots[0])
		top.slots = top.slots[1:]
		perNode[top.node]--
		if len(top.slots) == 0 {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	return picked
}

// nodeHeap orders nodes by live task count (most first), then by their
// highest candidate slot, then by ID.
type nodeHeap struct {
	items   []*nodeItem
	perNode map[string]int
	slot    func(i int) uint64
}

type nodeItem struct {
	node  string
	slots []int // candidate indexes, highest slot first
}

func (h *nodeHeap) Len() int { return len(h.items) }
func (h *nodeHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if ca, cb := h.perNode[a.node], h.perNode[b.node]; ca != cb {
		return ca > cb
	}
	if sa, sb := h.slot(a.slots[0]), h.slot(b.slots[0]); sa != sb {
		return sa > sb
	}
	return strings.Compare(a.node, b.node) < 0
}
func (h *nodeHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *nodeHeap) Push(x any)    { h.items = append(h.items, x.(*nodeItem)) }
func (h *nodeHeap) Pop() any {
	last := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return last
}
