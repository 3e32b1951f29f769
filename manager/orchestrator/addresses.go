package orchestrator

import (
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"shoal/manager/allocator"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// placeWithAddresses is Schedule plus task addresses: every task placed on
// a node that has a subnet (Node.subnet, containerd nodes) gets a free
// address of it from book in the same update, so the address is written
// with the placement. A cluster of process-runtime nodes pays nothing but a
// look at each node.
//
// A task placed on a node with no free address is scheduled once more among
// the other nodes; when it fits nowhere else it stays PENDING with
// "node X has no free task address in S" (and the scheduler's explanation
// for the other nodes), and is retried on every later pass, when an ended
// task may have released an address. The scheduler itself is not told
// about addresses: it stays pure and address-blind, and the retry costs
// something only when a node is full.
//
// placeWithAddresses is pure but for book.
func placeWithAddresses(nodes []*shoalpb.Node, tasks []*shoalpb.Task, now time.Time, book *addressBook) []*shoalpb.Task {
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
	a := addressing{subnets: subnets, book: book, lists: map[string]*nodeAddresses{}, full: map[string]string{}}
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

// addressing is one placement pass's use of the address book.
type addressing struct {
	subnets map[string]string // node ID -> subnet
	book    *addressBook
	// lists are the book's lists this pass took from: the pass keeps
	// using one even if the book drops it meanwhile, as a list rebuilt from
	// the store would not know the addresses this pass took.
	lists map[string]*nodeAddresses
	full  map[string]string // node ID -> why it has no address left
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
	list := a.lists[id]
	if list == nil {
		var err error
		if list, err = a.book.list(id, subnet); err != nil {
			// Only the dispatcher writes subnets, always valid ones.
			a.full[id] = "node " + nodeName(nodes, id) + ": " + err.Error()
			return false
		}
		a.lists[id] = list
	}
	addr, ok := a.book.take(list, u.GetId())
	if !ok {
		a.full[id] = list.free.ExhaustedMessage(nodeName(nodes, id))
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

// addressBook keeps the free-list of each node's subnet across the passes of
// one leader loop, so placing a task costs O(1) instead of a read of the
// node's tasks. A node's list is built from the store (tasksOn) the first
// time a task is placed there, then kept current by the store events
// (observe): a task that ends or is deleted releases its address. Events
// older than the read a list was built from can only hold an address the
// read saw released (task states only move forward), never free one that is
// held, so a stale event wastes an address until the next rebuild but never
// gives one out twice. The lists are dropped (rebuilt on demand) when the
// watch restarts or the store is replaced (both mark a full pass), when a
// write of the loop fails (the addresses it took were not written), and on
// every full pass; a new leader starts with none: the store is the only
// record.
type addressBook struct {
	tasksOn func(nodeID string) []*shoalpb.Task

	mu    sync.Mutex
	nodes map[string]*nodeAddresses // by node ID
}

type nodeAddresses struct {
	subnet  string
	free    *allocator.Addresses
	holders map[string]string // task ID -> address, of the tasks holding one
}

func newAddressBook(tasksOn func(nodeID string) []*shoalpb.Task) *addressBook {
	return &addressBook{tasksOn: tasksOn, nodes: map[string]*nodeAddresses{}}
}

// list returns the free-list of nodeID's subnet, built from the store if
// the book has none.
func (b *addressBook) list(nodeID, subnet string) (*nodeAddresses, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.nodes[nodeID]; n != nil && n.subnet == subnet {
		return n, nil
	}
	tasks := b.tasksOn(nodeID)
	free, err := allocator.NewAddresses(subnet, tasks)
	if err != nil {
		return nil, err
	}
	n := &nodeAddresses{subnet: subnet, free: free, holders: map[string]string{}}
	for _, t := range tasks {
		if allocator.HoldsAddress(t) {
			n.holders[t.GetId()] = t.GetAddress()
		}
	}
	b.nodes[nodeID] = n
	return n, nil
}

// take gives task taskID a free address of n; false when none is left.
func (b *addressBook) take(n *nodeAddresses, taskID string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	addr, ok := n.free.Take()
	if ok {
		n.holders[taskID] = addr
	}
	return addr, ok
}

// observe applies a store event to the lists it concerns.
func (b *addressBook) observe(ev state.Event) {
	switch o := ev.Object.(type) {
	case *shoalpb.Task:
		b.mu.Lock()
		defer b.mu.Unlock()
		n := b.nodes[o.GetNodeId()]
		if n == nil {
			return
		}
		held, had := n.holders[o.GetId()]
		switch {
		case ev.Kind == state.EventDelete || !allocator.HoldsAddress(o):
			if had {
				delete(n.holders, o.GetId())
				n.free.Release(held)
			}
		case !had:
			if n.free.Hold(o.GetAddress()) {
				n.holders[o.GetId()] = o.GetAddress()
			}
		}
	case *shoalpb.Node:
		b.mu.Lock()
		defer b.mu.Unlock()
		if n := b.nodes[o.GetId()]; n != nil && (ev.Kind == state.EventDelete || n.subnet != o.GetSubnet()) {
			delete(b.nodes, o.GetId())
		}
	}
	// A reset (the store was replaced) marks a full pass, which resets the
	// book before it places anything; dropping lists here, during a pass,
	// is what addressing.lists guards against.
}

// reset drops every list; each is rebuilt from the store when next needed.
// Call it between passes only.
func (b *addressBook) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.nodes)
}
