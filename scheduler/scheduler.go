// Package scheduler decides which node runs each pending task.
//
// It is pure: PlaceTasks is a function of its arguments alone — no goroutines,
// no I/O, no clock, no randomness, no package state — so the same input always
// gives the same decisions, whatever the order of the nodes. It never modifies
// what it is given; the scheduler loop turns decisions into store writes.
//
// Placement is a pipeline of filters (ready, active, constraints, resources,
// host ports, max replicas per node), each counting the nodes it rejects so a
// task that fits nowhere carries an explanation, then a score among the nodes
// left: spread preferences first, then fewest tasks of the service on the
// node, then fewest tasks in all, then node ID.
package scheduler

import (
	"slices"
	"strconv"
	"strings"

	shoalpb "shoal/proto"
)

// Cluster is the scheduler's view: every node, and every task that holds
// resources on a node (see HoldsResources). Tasks that do not hold resources
// are ignored, so passing every task is fine; tasks whose node is not in Nodes
// are ignored too. Of nodes sharing an ID, the first counts.
type Cluster struct {
	Nodes []*shoalpb.Node
	Tasks []*shoalpb.Task
}

// Decision is the outcome for one pending task: NodeID set when it was placed,
// or NodeID "" and Explanation set (e.g. "no suitable node (insufficient
// memory on 3 nodes)") when it fits nowhere and stays PENDING.
type Decision struct {
	TaskID      string
	NodeID      string
	Explanation string
}

// HoldsResources reports whether t counts against its node: node_id set,
// desired state RUNNING and status at most RUNNING.
func HoldsResources(t *shoalpb.Task) bool {
	return t.GetNodeId() != "" &&
		t.GetDesiredState() == shoalpb.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() <= shoalpb.TaskState_TASK_STATE_RUNNING
}

// IsPending reports whether t waits for PlaceTasks: status PENDING with
// desired state RUNNING.
func IsPending(t *shoalpb.Task) bool {
	return t.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_PENDING &&
		t.GetDesiredState() == shoalpb.TaskState_TASK_STATE_RUNNING
}

// PlaceTasks decides a node for each pending task (see IsPending) and returns
// one Decision per pending task, in the order of pending; other tasks in
// pending get no decision.
//
// A task whose node_id is already set (global services) is only checked
// against the filters on that node: placed there or explained. Such tasks go
// first, as they have nowhere else to go. The others are placed group by group
// (tasks of one service with the same scheduling fields; groups in order of
// first appearance, tasks in input order), each on the best-scoring node that
// passes every filter. Tasks placed earlier in the call count against later
// ones: resources, host ports, spread, tasks per node.
//
// Cost per group: O(candidates + tasks·(depth+1)·log candidates), where
// candidates are the nodes passing its static filters and depth is its number
// of spread preferences; so O(tasks·log nodes) for a batch of one service.
// Add one pass over the nodes per distinct set of constraints and per spread
// attribute in the batch, and one per group that runs out of nodes (to
// explain it).
func PlaceTasks(c Cluster, pending []*shoalpb.Task) []Decision {
	decisions := make([]Decision, 0, len(pending))
	var (
		groups []*group
		byKey  = make(map[string]*group)
		pinned map[string]struct{} // IDs of tasks with a preset node
		key    []byte
	)
	for _, t := range pending {
		if !IsPending(t) {
			continue
		}
		key = appendGroupKey(key[:0], t)
		g := byKey[string(key)]
		if g == nil {
			g = &group{req: compile(t.GetServiceId(), t.GetSpec())}
			byKey[string(key)] = g
			groups = append(groups, g)
		}
		di := len(decisions)
		decisions = append(decisions, Decision{TaskID: t.GetId()})
		if id := t.GetNodeId(); id != "" {
			g.pinned = append(g.pinned, pinnedTask{decision: di, nodeID: id})
			if pinned == nil {
				pinned = make(map[string]struct{})
			}
			pinned[t.GetId()] = struct{}{}
		} else {
			g.free = append(g.free, di)
		}
	}
	if len(decisions) == 0 {
		return decisions
	}
	s := newState(c, pinned)
	if len(s.nodes) == 0 {
		for i := range decisions {
			decisions[i].Explanation = noSuitableNode + "(no nodes in the cluster)"
		}
		return decisions
	}
	for _, g := range groups {
		if len(g.pinned) > 0 {
			s.placePinned(g, decisions)
		}
	}
	for _, g := range groups {
		if len(g.free) > 0 {
			s.placeFree(g, decisions)
		}
	}
	return decisions
}

// group is the pending tasks that share requirements, by index in decisions.
type group struct {
	req    requirements
	pinned []pinnedTask
	free   []int
}

type pinnedTask struct {
	decision int
	nodeID   string
}

// appendGroupKey appends to buf a key equal for two tasks exactly when the
// scheduler must treat them alike: service and every spec field it reads.
// Strings are length-prefixed so no content can forge a separator.
func appendGroupKey(buf []byte, t *shoalpb.Task) []byte {
	str := func(s string) {
		buf = strconv.AppendInt(buf, int64(len(s)), 10)
		buf = append(buf, ':')
		buf = append(buf, s...)
	}
	spec := t.GetSpec()
	str(t.GetServiceId())
	res := spec.GetResources().GetReservations()
	buf = strconv.AppendInt(append(buf, 'c'), res.GetNanoCpus(), 10)
	buf = strconv.AppendInt(append(buf, 'm'), res.GetMemoryBytes(), 10)
	pl := spec.GetPlacement()
	buf = strconv.AppendUint(append(buf, 'x'), pl.GetMaxReplicasPerNode(), 10)
	buf = append(buf, 'k')
	for _, c := range pl.GetConstraints() {
		str(c)
	}
	buf = append(buf, 's')
	for _, p := range pl.GetPreferences() {
		str(p.GetSpread())
	}
	buf = append(buf, 'p')
	for _, p := range spec.GetPorts() {
		if hp, ok := hostPortOf(p); ok {
			buf = strconv.AppendUint(buf, uint64(hp.port), 10)
			str(hp.protocol)
		}
	}
	return buf
}

// node is the scheduler's working copy of one node.
type node struct {
	pb *shoalpb.Node
	// rank is the node's position in node ID order: the last tie-break.
	rank    int32
	total   int32 // tasks on the node
	cpuFree int64 // capacity minus reservations; negative when overcommitted
	memFree int64
	ports   map[hostPort]struct{} // host ports in use; nil when none
	// availability is the verdict of the ready and active filters.
	availability reject
}

// state is the cluster as placements so far leave it.
type state struct {
	nodes []node
	byID  map[string]int32
	// svc counts, per node, the tasks of the service being placed; it is all
	// zeros between groups (see load and unload).
	svc []int32
	// onNodes lists, per service, the node of each of its tasks, with
	// repetitions: existing tasks, then placements.
	onNodes map[string][]int32
	// candidates and sorted are the buffers of buildTree and newBranch.
	candidates, sorted []nodeEntry
	// eligible and spreads are indexes built on first use (see index.go).
	eligible map[string][]int32
	spreads  map[string]*spreadValues
}

// newState indexes the nodes (the first of duplicate IDs wins) and charges
// each node with the tasks that hold resources on it, except those in skip
// (pinned pending tasks, which are placed anew).
func newState(c Cluster, skip map[string]struct{}) *state {
	s := &state{
		nodes:   make([]node, 0, len(c.Nodes)),
		byID:    make(map[string]int32, len(c.Nodes)),
		onNodes: make(map[string][]int32),
	}
	for _, n := range c.Nodes {
		id := n.GetId()
		if id == "" {
			continue
		}
		if _, dup := s.byID[id]; dup {
			continue
		}
		s.byID[id] = int32(len(s.nodes))
		d := n.GetDescription()
		s.nodes = append(s.nodes, node{pb: n, cpuFree: d.GetNanoCpus(), memFree: d.GetMemoryBytes(), availability: availabilityReject(n)})
	}
	order := make([]int32, len(s.nodes))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		return strings.Compare(s.nodes[a].pb.GetId(), s.nodes[b].pb.GetId())
	})
	for rank, ni := range order {
		s.nodes[ni].rank = int32(rank)
	}
	s.svc = make([]int32, len(s.nodes))
	for _, t := range c.Tasks {
		if !HoldsResources(t) {
			continue
		}
		if _, ok := skip[t.GetId()]; ok {
			continue
		}
		ni, ok := s.byID[t.GetNodeId()]
		if !ok {
			continue
		}
		n := &s.nodes[ni]
		res := t.GetSpec().GetResources().GetReservations()
		n.cpuFree -= max(res.GetNanoCpus(), 0)
		n.memFree -= max(res.GetMemoryBytes(), 0)
		n.total++
		for _, p := range t.GetSpec().GetPorts() {
			if hp, ok := hostPortOf(p); ok {
				n.usePort(hp)
			}
		}
		s.onNodes[t.GetServiceId()] = append(s.onNodes[t.GetServiceId()], ni)
	}
	return s
}

func (n *node) usePort(p hostPort) {
	if n.ports == nil {
		n.ports = make(map[hostPort]struct{})
	}
	n.ports[p] = struct{}{}
}

// load fills s.svc with the task counts of service; unload zeroes them again.
func (s *state) load(service string) {
	for _, ni := range s.onNodes[service] {
		s.svc[ni]++
	}
}

func (s *state) unload(service string) {
	for _, ni := range s.onNodes[service] {
		s.svc[ni] = 0
	}
}

// consume charges node ni with a task of r; s.svc must be loaded for r.
func (s *state) consume(ni int32, r *requirements) {
	n := &s.nodes[ni]
	n.cpuFree -= r.cpu
	n.memFree -= r.mem
	n.total++
	for _, p := range r.ports {
		n.usePort(p)
	}
	s.svc[ni]++
	s.onNodes[r.serviceID] = append(s.onNodes[r.serviceID], ni)
}

// placePinned checks each task of g with a preset node against that node.
func (s *state) placePinned(g *group, decisions []Decision) {
	r := &g.req
	if r.invalid != nil {
		for _, p := range g.pinned {
			decisions[p.decision].Explanation = invalidExplanation(r)
		}
		return
	}
	s.load(r.serviceID)
	defer s.unload(r.serviceID)
	for _, p := range g.pinned {
		ni, ok := s.byID[p.nodeID]
		if !ok {
			decisions[p.decision].Explanation = noSuitableNode + "(node " + p.nodeID + " not in the cluster)"
			continue
		}
		if rj := s.firstReject(ni, r); rj.kind != passed {
			var t tally
			t.add(rj)
			decisions[p.decision].Explanation = t.explain(r)
			continue
		}
		s.consume(ni, r)
		decisions[p.decision].NodeID = p.nodeID
	}
}

// placeFree places the tasks of g without a preset node, best node first.
// When no node fits any more, the remaining tasks of g share one
// explanation: placements only consume, so nothing would fit them either.
func (s *state) placeFree(g *group, decisions []Decision) {
	r := &g.req
	if r.invalid != nil {
		for _, di := range g.free {
			decisions[di].Explanation = invalidExplanation(r)
		}
		return
	}
	s.load(r.serviceID)
	defer s.unload(r.serviceID)
	tr := s.buildTree(r)
	fits := func(ni int32) bool { return s.dynamicReject(ni, r).kind == passed }
	for i, di := range g.free {
		ni, ok := tr.next(fits)
		if !ok {
			explanation := s.explain(r)
			for _, dj := range g.free[i:] {
				decisions[dj].Explanation = explanation
			}
			return
		}
		s.consume(ni, r)
		tr.placed()
		decisions[di].NodeID = s.nodes[ni].pb.GetId()
	}
}
