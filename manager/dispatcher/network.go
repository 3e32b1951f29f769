package dispatcher

import (
	"net"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"shoal/manager/allocator"
	shoalpb "shoal/proto"
)

// peerTable is what every session message says about the other nodes'
// subnets. Node events update it in O(1) unless a node's subnet or address
// changed; then the sorted list is rebuilt once and every session is poked,
// so a change costs one rebuild however many sessions read it.
type peerTable struct {
	mu     sync.RWMutex
	byNode map[string]*shoalpb.NodeSubnet
	list   []*shoalpb.NodeSubnet // sorted by node ID; never modified once built
}

// peerOf is what n's peers need to route to its tasks; nil while it has
// no subnet or no address.
func peerOf(n *shoalpb.Node) *shoalpb.NodeSubnet {
	if n.GetSubnet() == "" || n.GetStatus().GetAddr() == "" {
		return nil
	}
	host := n.GetStatus().GetAddr()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return &shoalpb.NodeSubnet{NodeId: n.GetId(), Subnet: n.GetSubnet(), Ip: host}
}

// reset rebuilds the table from every node; it reports whether it changed.
func (p *peerTable) reset(nodes []*shoalpb.Node) bool {
	byNode := map[string]*shoalpb.NodeSubnet{}
	for _, n := range nodes {
		if peer := peerOf(n); peer != nil {
			byNode[n.GetId()] = peer
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(byNode) == len(p.byNode) {
		same := true
		for id, peer := range byNode {
			if old := p.byNode[id]; old == nil || !proto.Equal(old, peer) {
				same = false
				break
			}
		}
		if same {
			return false
		}
	}
	p.byNode = byNode
	p.rebuild()
	return true
}

// update applies one node event; it reports whether the table changed.
func (p *peerTable) update(n *shoalpb.Node, deleted bool) bool {
	var peer *shoalpb.NodeSubnet
	if !deleted {
		peer = peerOf(n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.byNode[n.GetId()]
	switch {
	case old == nil && peer == nil:
		return false
	case old != nil && peer != nil && proto.Equal(old, peer):
		return false
	case peer == nil:
		delete(p.byNode, n.GetId())
	default:
		if p.byNode == nil {
			p.byNode = map[string]*shoalpb.NodeSubnet{}
		}
		p.byNode[n.GetId()] = peer
	}
	p.rebuild()
	return true
}

// rebuild makes a new list; p.mu must be held.
func (p *peerTable) rebuild() {
	list := make([]*shoalpb.NodeSubnet, 0, len(p.byNode))
	for _, peer := range p.byNode {
		list = append(list, peer)
	}
	slices.SortFunc(list, func(a, b *shoalpb.NodeSubnet) int { return strings.Compare(a.NodeId, b.NodeId) })
	p.list = list
}

// others returns the peers of nodeID: every entry but its own. The entries
// are shared and must not be modified.
func (p *peerTable) others(nodeID string) []*shoalpb.NodeSubnet {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*shoalpb.NodeSubnet, 0, len(p.list))
	for _, peer := range p.list {
		if peer.NodeId != nodeID {
			out = append(out, peer)
		}
	}
	return out
}

// subnetAssigner gives subnets to the nodes of one liveness pass that need
// one (allocator.NeedsSubnet). Its free-list is built from every node on
// first use only, so a pass over process-runtime nodes costs nothing.
type subnetAssigner struct {
	spec  *shoalpb.ClusterSpec
	nodes []*shoalpb.Node
	free  *allocator.Subnets
	err   error
}

// assign returns a subnet for the node described by desc, or "" and the
// status message that says why it has none.
func (a *subnetAssigner) assign(n *shoalpb.Node, desc *shoalpb.NodeDescription) (subnet, message string) {
	if a.free == nil && a.err == nil {
		var pool allocator.Pool
		if pool, a.err = allocator.PoolOf(a.spec); a.err == nil {
			a.free = allocator.NewSubnets(pool, a.nodes)
		}
	}
	if a.err != nil {
		return "", "no task subnet: " + a.err.Error()
	}
	if s, ok := a.free.Take(); ok {
		return s, ""
	}
	name := desc.GetHostname()
	if name == "" {
		name = n.GetId()
	}
	return "", a.free.ExhaustedMessage(name)
}
