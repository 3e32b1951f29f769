package allocator

import (
	"fmt"
	"net/netip"

	shoalpb "shoal/proto"
)

// ContainerdRuntime is the NodeDescription.runtime of nodes that get a
// subnet. Nodes of the process runtime run tasks as host processes on the
// host's network and get none.
const ContainerdRuntime = "containerd"

// NeedsSubnet reports whether a node described by desc that holds subnet
// should be given one.
func NeedsSubnet(desc *shoalpb.NodeDescription, subnet string) bool {
	return subnet == "" && desc.GetRuntime() == ContainerdRuntime
}

// Subnets is the free-list of a pool's node subnets, built from the nodes
// that hold one. A removed node is no longer in the store, so its subnet is
// free the next time a Subnets is built.
type Subnets struct {
	pool Pool
	used map[uint64]struct{}
	next uint64 // no free subnet below it
}

// NewSubnets returns the free-list of pool given every node of the cluster.
// It costs O(nodes); build one only when a node needs a subnet.
func NewSubnets(pool Pool, nodes []*shoalpb.Node) *Subnets {
	s := &Subnets{pool: pool, used: map[uint64]struct{}{}}
	for _, n := range nodes {
		if n.GetSubnet() == "" {
			continue
		}
		p, err := netip.ParsePrefix(n.GetSubnet())
		if err != nil {
			continue
		}
		if i, ok := pool.index(p); ok {
			s.used[i] = struct{}{}
		}
	}
	return s
}

// Take returns the lowest free subnet ("10.200.3.0/24") and marks it used;
// false when the pool has none left.
func (s *Subnets) Take() (string, bool) {
	for ; s.next < s.pool.subnets(); s.next++ {
		if _, ok := s.used[s.next]; !ok {
			s.used[s.next] = struct{}{}
			sub := s.pool.subnet(s.next)
			s.next++
			return sub.String(), true
		}
	}
	return "", false
}

// ExhaustedMessage is what a node that needs a subnet of an exhausted pool
// shows in its status.
func (s *Subnets) ExhaustedMessage(node string) string {
	return fmt.Sprintf("task pool %s has no free /%d for node %s; init the cluster with a larger --task-pool",
		s.pool, s.pool.SubnetBits, node)
}
