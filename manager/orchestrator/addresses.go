package orchestrator

import (
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"shoal/manager/allocator"
	shoalpb "shoal/proto"
)

// placeWithAddresses is Schedule plus task addresses: every task placed on
// a node that has a subnet (Node.subnet, containerd nodes) gets a free
// address of it (allocator.Addresses) in the same update, so the address is
// written with the placement. tasksOn returns the stored tasks of a node; it
// is called once per node that receives a task, and only when some node has
// a subnet, so a cluster of process-runtime nodes pays nothing.
//
// A task placed on a node with no free address is scheduled once more among
// the other nodes; when it fits nowhere else it stays PENDING with
// "node X has no free task address in S" (and the scheduler's explanation
// for the other nodes), and is retried on every later pass, when an ended
// task may have released an address. The scheduler itself is not told
// about addresses: it stays pure and address-blind, and the retry costs
// something only when a node is full.
//
// placeWithAddresses is pure but for tasksOn.
func placeWithAddresses(nodes []*shoalpb.Node, tasks []*shoalpb.Task, now time.Time, tasksOn func(nodeID string) []*shoalpb.Task) []*shoalpb.Task {
	updates := Schedule(nodes, tasks, now)
	var subnets map[string]string
	for _, n := range nodes {
		if n.GetSubnet() != "" {
			if subnets == nil {
				subnets = map[string]string{}
			}
			subnets[n.GetId()] = n.GetSubnet()
		}
	}
	if subnets == nil || len(updates) == 0 {
		return updates
	}
	a := addressing{subnets: subnets, tasksOn: tasksOn, free: map[string]*allocator.Addresses{}, full: map[string]string{}}
	var retry []int // indexes in updates
	for i, u := range updates {
		if u.GetNodeId() != "" && u.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_ASSIGNED && !a.take(u, nodes) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return updates
	}
	return a.reschedule(nodes, tasks, updates, retry, now)
}

// addressing holds the free-lists of one placement pass.
type addressing struct {
	subnets map[string]string // node ID -> subnet
	tasksOn func(nodeID string) []*shoalpb.Task
	free    map[string]*allocator.Addresses
	full    map[string]string // node ID -> why it has no address left
}

// take sets u.Address when u's node has a subnet; false when the node has
// no free address.
func (a *addressing) take(u *shoalpb.Task, nodes []*shoalpb.Node) bool {
	id := u.GetNodeId()
	subnet := a.subnets[id]
	if subnet == "" {
		return true
	}
	if _, ok := a.full[id]; ok {
		return false
	}
	free := a.free[id]
	if free == nil {
		var err error
		if free, err = allocator.NewAddresses(subnet, a.tasksOn(id)); err != nil {
			// Only the allocator writes subnets, and always valid ones.
			a.full[id] = "node " + id + ": " + err.Error()
			return false
		}
		a.free[id] = free
	}
	addr, ok := free.Take()
	if !ok {
		a.full[id] = free.ExhaustedMessage(nodeName(nodes, id))
		return false
	}
	u.Address = addr
	return true
}

// reschedule places the tasks updates[retry] again, among the nodes that
// still have addresses, counting the placements made so far. Tasks placed
// nowhere stay PENDING with the full nodes' messages.
func (a *addressing) reschedule(nodes []*shoalpb.Node, tasks, updates []*shoalpb.Task, retry []int, now time.Time) []*shoalpb.Task {
	var others []*shoalpb.Node
	for _, n := range nodes {
		if _, full := a.full[n.GetId()]; !full {
			others = append(others, n)
		}
	}
	byID := make(map[string]*shoalpb.Task, len(updates))
	for _, u := range updates {
		byID[u.GetId()] = u
	}
	retried := make(map[string]bool, len(retry))
	for _, i := range retry {
		retried[updates[i].GetId()] = true
	}
	// The second round sees the first round's placements and, as pending,
	// only the retried tasks: the others already have their verdict.
	again := make([]*shoalpb.Task, 0, len(tasks))
	origs := make(map[string]*shoalpb.Task, len(retry))
	for _, t := range tasks {
		switch u := byID[t.GetId()]; {
		case retried[t.GetId()]:
			again = append(again, t)
			origs[t.GetId()] = t
		case u != nil && u.GetNodeId() != "":
			again = append(again, u)
		case !isPending(t):
			again = append(again, t)
		}
	}
	second := map[string]*shoalpb.Task{}
	for _, u := range Schedule(others, again, now) {
		second[u.GetId()] = u
	}
	why := a.fullMessage()
	out := updates[:0]
	for _, u := range updates {
		if !retried[u.GetId()] {
			out = append(out, u)
			continue
		}
		orig := origs[u.GetId()]
		if v := second[u.GetId()]; v != nil && v.GetNodeId() != "" && a.take(v, nodes) {
			out = append(out, v)
			continue
		}
		msg := why
		if orig.GetNodeId() == "" && len(others) > 0 { // not pinned to the full node
			if v := second[u.GetId()]; v != nil && v.GetNodeId() == "" {
				msg += "; other nodes: " + v.GetStatus().GetMessage()
			} else if v == nil {
				// Schedule left it out: the explanation is the stored
				// message, unchanged.
				msg += "; other nodes: " + orig.GetStatus().GetMessage()
			}
		}
		if orig.GetStatus().GetMessage() == msg {
			continue // nothing to write
		}
		c := proto.Clone(orig).(*shoalpb.Task)
		if c.Status == nil {
			c.Status = &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_PENDING}
		}
		c.Status.Message = msg
		out = append(out, c)
	}
	return out
}

// fullMessage joins the full nodes' messages, in node order.
func (a *addressing) fullMessage() string {
	ids := make([]string, 0, len(a.full))
	for id := range a.full {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	msgs := make([]string, len(ids))
	for i, id := range ids {
		msgs[i] = a.full[id]
	}
	return strings.Join(msgs, "; ")
}

// nodeName is the node's hostname, or its ID when it has none.
func nodeName(nodes []*shoalpb.Node, id string) string {
	for _, n := range nodes {
		if n.GetId() == id && n.GetDescription().GetHostname() != "" {
			return n.GetDescription().GetHostname()
		}
	}
	return id
}
