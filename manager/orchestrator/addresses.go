package orchestrator

import (
	"fmt"
	"net/netip"
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
// address of the node's slice of each of its networks from book in the same
// update, so the addresses are written with the placement. A cluster of
// process-runtime nodes pays nothing but a look at each node.
//
// A task placed on a node with no free address is scheduled once more among
// the other nodes; when it fits nowhere else it stays PENDING with
// "node X has no free task address in S" (and the scheduler's explanation
// for the other nodes), and is retried on every later pass, when an ended
// task may have released an address. The scheduler itself is not told
// about addresses: it stays pure and address-blind, and the retry costs
// something only when a node is full. A task on a network that no longer
// exists stays PENDING saying so.
//
// nets are the cluster's networks (nil: the default network only).
// placeWithAddresses is pure but for book.
func placeWithAddresses(nodes []*shoalpb.Node, tasks []*shoalpb.Task, nets *networkSet, now time.Time, book *addressBook) []*shoalpb.Task {
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
	a := addressing{subnets: subnets, nets: nets, book: book, lists: map[listKey]*nodeAddresses{}, full: map[string]string{}}
	var retry []int // indexes in updates
	for i, u := range updates {
		if u.GetNodeId() == "" || u.GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_ASSIGNED {
			continue
		}
		if why := nets.missing(u); why != "" {
			updates[i] = unplaced(u, tasks, why)
			continue
		}
		if !a.take(u, nodes) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return updates
	}
	return a.reschedule(nodes, tasks, updates, retry, now)
}

// networkSet is what placement needs of the cluster's networks.
type networkSet struct {
	pool    allocator.Pool
	subnets map[string]netip.Prefix // network ID -> subnet, the default network's included
}

// newNetworkSet reads the networks of the store.
func newNetworkSet(tx state.ReadTx) *networkSet {
	spec := tx.Cluster().GetSpec()
	pool, err := allocator.PoolOf(spec)
	if err != nil {
		return nil // no valid task pool: nodes have no subnets either
	}
	s := &networkSet{pool: pool, subnets: map[string]netip.Prefix{allocator.DefaultNetworkID: pool.Prefix}}
	for _, n := range tx.Networks() {
		if p, err := netip.ParsePrefix(n.GetSubnet()); err == nil {
			s.subnets[n.GetId()] = p
		}
	}
	return s
}

// missing says which of t's networks do not exist, "" when all do.
func (s *networkSet) missing(t *shoalpb.Task) string {
	for _, id := range allocator.TaskNetworkIDs(t.GetSpec()) {
		if id == allocator.DefaultNetworkID {
			continue
		}
		if s == nil {
			return fmt.Sprintf("network %s is unknown", id)
		}
		if _, ok := s.subnets[id]; !ok {
			return fmt.Sprintf("network %s no longer exists; update the service's networks (--network-rm)", id)
		}
	}
	return ""
}

// slice is the part of network id that a node with subnet nodeSubnet gives
// its tasks.
func (s *networkSet) slice(id, nodeSubnet string) (string, error) {
	if id == allocator.DefaultNetworkID {
		return nodeSubnet, nil
	}
	p, err := s.pool.Slice(s.subnets[id], nodeSubnet)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// unplaced is u back to PENDING, unassigned, with why as its message.
func unplaced(u *shoalpb.Task, tasks []*shoalpb.Task, why string) *shoalpb.Task {
	for _, t := range tasks {
		if t.GetId() == u.GetId() {
			c := proto.Clone(t).(*shoalpb.Task)
			if c.Status == nil {
				c.Status = &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_PENDING}
			}
			c.Status.Message = why
			return c
		}
	}
	return u
}

// addressing is one placement pass's use of the address book.
type addressing struct {
	subnets map[string]string // node ID -> subnet
	nets    *networkSet
	book    *addressBook
	// lists are the book's lists this pass took from: the pass keeps
	// using one even if the book drops it meanwhile, as a list rebuilt from
	// the store would not know the addresses this pass took.
	lists map[listKey]*nodeAddresses
	full  map[string]string // node ID -> why it has no address left
}

// listKey names the free-list of one node's slice of one network.
type listKey struct{ node, network string }

// take sets u.Networks and u.Address (the first network's) when u's node
// has a subnet; false when the node has no free address on one of them.
func (a *addressing) take(u *shoalpb.Task, nodes []*shoalpb.Node) bool {
	id := u.GetNodeId()
	subnet := a.subnets[id]
	if subnet == "" {
		return true
	}
	if _, ok := a.full[id]; ok {
		return false
	}
	ids := allocator.TaskNetworkIDs(u.GetSpec())
	got := make([]*shoalpb.TaskNetwork, 0, len(ids))
	var taken []*nodeAddresses
	for _, netID := range ids {
		list, why := a.list(id, netID, subnet, nodes)
		var addr string
		ok := list != nil
		if ok {
			addr, ok = a.book.take(list, u.GetId())
			if !ok {
				why = list.free.ExhaustedMessage(nodeName(nodes, id))
			}
		}
		if !ok {
			for _, l := range taken {
				a.book.release(l, u.GetId())
			}
			a.full[id] = why
			return false
		}
		taken = append(taken, list)
		got = append(got, &shoalpb.TaskNetwork{NetworkId: netID, Address: addr})
	}
	u.Networks = got
	u.Address = got[0].GetAddress()
	return true
}

// list is the book's free-list of node's slice of network netID; nil and
// why when there is none.
func (a *addressing) list(node, netID, subnet string, nodes []*shoalpb.Node) (*nodeAddresses, string) {
	k := listKey{node, netID}
	if list := a.lists[k]; list != nil {
		return list, ""
	}
	slice, err := a.nets.slice(netID, subnet)
	if err == nil {
		var list *nodeAddresses
		if list, err = a.book.list(k, slice); err == nil {
			a.lists[k] = list
			return list, ""
		}
	}
	// Only the dispatcher writes subnets, always valid ones; only the
	// control API makes networks, always ones that slice.
	return nil, "node " + nodeName(nodes, node) + ": " + err.Error()
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

// addressBook keeps the free-list of each node's slice of each network
// (the default network's slice is the node's subnet) across the passes of
// one leader loop, so placing a task costs O(1) instead of a read of the
// node's tasks. A list is built from the store (tasksOn) the first
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
	nodes map[string]map[string]*nodeAddresses // node ID -> network ID -> list
}

type nodeAddresses struct {
	subnet  string
	free    *allocator.Addresses
	holders map[string]string // task ID -> address, of the tasks holding one
}

func newAddressBook(tasksOn func(nodeID string) []*shoalpb.Task) *addressBook {
	return &addressBook{tasksOn: tasksOn, nodes: map[string]map[string]*nodeAddresses{}}
}

// list returns the free-list of the node's slice of a network (subnet), built from the store if
// the book has none.
func (b *addressBook) list(k listKey, subnet string) (*nodeAddresses, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.nodes[k.node][k.network]; n != nil && n.subnet == subnet {
		return n, nil
	}
	tasks := b.tasksOn(k.node)
	free, err := allocator.NewAddresses(subnet, tasks)
	if err != nil {
		return nil, err
	}
	n := &nodeAddresses{subnet: subnet, free: free, holders: map[string]string{}}
	for _, t := range tasks {
		if !allocator.HoldsAddress(t) {
			continue
		}
		for _, a := range allocator.TaskAddresses(t) {
			if free.Contains(a) {
				n.holders[t.GetId()] = a
			}
		}
	}
	if b.nodes[k.node] == nil {
		b.nodes[k.node] = map[string]*nodeAddresses{}
	}
	b.nodes[k.node][k.network] = n
	return n, nil
}

// release gives back the address n gave taskID in this pass.
func (b *addressBook) release(n *nodeAddresses, taskID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a, ok := n.holders[taskID]; ok {
		delete(n.holders, taskID)
		n.free.Release(a)
	}
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
		for _, n := range b.nodes[o.GetNodeId()] {
			held, had := n.holders[o.GetId()]
			switch {
			case ev.Kind == state.EventDelete || !allocator.HoldsAddress(o):
				if had {
					delete(n.holders, o.GetId())
					n.free.Release(held)
				}
			case !had:
				for _, a := range allocator.TaskAddresses(o) {
					if n.free.Hold(a) {
						n.holders[o.GetId()] = a
					}
				}
			}
		}
	case *shoalpb.Node:
		b.mu.Lock()
		defer b.mu.Unlock()
		lists := b.nodes[o.GetId()]
		if lists == nil {
			return
		}
		if def := lists[allocator.DefaultNetworkID]; ev.Kind == state.EventDelete || (def != nil && def.subnet != o.GetSubnet()) {
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
