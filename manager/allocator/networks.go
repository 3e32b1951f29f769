package allocator

import (
	"errors"
	"fmt"
	"net/netip"

	shoalpb "shoal/proto"
)

// Networks: every network has a subnet, and every node a slice of each
// network's subnet. A node's slice of a network is the one with the index
// its Node.subnet has in the task pool, and slices are as much shorter than
// their network as node subnets are than the task pool (with the defaults:
// /16 networks, /24 slices). So a node's slices follow from its subnet alone:
// nothing is allocated or stored per node and network, a new network is
// usable on every node at once, and every agent computes every other node's
// slices from the subnets it already routes to.
//
// The default network is the task pool itself (its slices are the node
// subnets); it is implied by the cluster spec and never stored.
const (
	DefaultNetworkID   = "default"
	DefaultNetworkName = "default"
	// DefaultNetworkPool is where networks created without a subnet take
	// theirs from: 64 networks as large as the default task pool.
	DefaultNetworkPool = "10.64.0.0/10"
)

// ErrNoNetworkSubnet is returned when the network pool has no free subnet.
var ErrNoNetworkSubnet = errors.New("no free network subnet")

// DefaultNetwork is the cluster's default network, as a Network object.
func DefaultNetwork(spec *shoalpb.ClusterSpec) *shoalpb.Network {
	pool := spec.GetTaskPool()
	if pool == "" {
		pool = DefaultTaskPool
	}
	return &shoalpb.Network{
		Id:     DefaultNetworkID,
		Spec:   &shoalpb.NetworkSpec{Name: DefaultNetworkName},
		Subnet: pool,
	}
}

// TaskNetworkIDs are the IDs of the networks a task of spec joins, the
// primary one first: the spec's targets, or the default network.
func TaskNetworkIDs(spec *shoalpb.TaskSpec) []string {
	if len(spec.GetNetworks()) == 0 {
		return []string{DefaultNetworkID}
	}
	ids := make([]string, len(spec.GetNetworks()))
	for i, n := range spec.GetNetworks() {
		ids[i] = n.GetTarget()
	}
	return ids
}

// NetworkPoolOf is the cluster's network pool (ClusterSpec.network_pool or
// the default), which must not overlap the task pool or the VIP pool.
func NetworkPoolOf(spec *shoalpb.ClusterSpec) (netip.Prefix, error) {
	cidr := spec.GetNetworkPool()
	if cidr == "" {
		cidr = DefaultNetworkPool
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: network_pool %q is not an IPv4 CIDR; give one such as %s", ErrInvalidPool, cidr, DefaultNetworkPool)
	}
	p = p.Masked()
	if tasks, err := PoolOf(spec); err == nil && tasks.Prefix.Overlaps(p) {
		return netip.Prefix{}, fmt.Errorf("%w: network_pool %s overlaps task_pool %s; give pools that do not overlap", ErrInvalidPool, p, tasks)
	}
	if vips, err := VIPPoolOf(spec); err == nil && vips.Overlaps(p) {
		return netip.Prefix{}, fmt.Errorf("%w: network_pool %s overlaps vip_pool %s; give pools that do not overlap", ErrInvalidPool, p, vips)
	}
	return p, nil
}

// sliceShift is how many bits longer a slice is than its network.
func (p Pool) sliceShift() int { return p.SubnetBits - p.Prefix.Bits() }

// Slice returns a node's slice of network: the part of it with the index
// nodeSubnet (the node's Node.subnet) has in the task pool.
func (p Pool) Slice(network netip.Prefix, nodeSubnet string) (netip.Prefix, error) {
	sub, err := netip.ParsePrefix(nodeSubnet)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("node subnet %q: %w", nodeSubnet, err)
	}
	i, ok := p.index(sub)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("node subnet %s is not a /%d of task pool %s", sub, p.SubnetBits, p)
	}
	bits := network.Bits() + p.sliceShift()
	if bits > MaxNodeSubnetBits {
		return netip.Prefix{}, fmt.Errorf("network %s is too small for per-node slices of this cluster (/%d); give a /%d or larger", network, bits, MaxNodeSubnetBits-p.sliceShift())
	}
	size := uint32(1) << (32 - bits)
	return netip.PrefixFrom(uintToAddr(addrToUint(network.Masked().Addr())+uint32(i)*size), bits), nil
}

// CheckNetworkSubnet validates the subnet a user gives a new network: IPv4,
// large enough to give every possible node a slice of at least /29, and
// overlapping neither the task pool, the VIP pool nor another network.
// Errors name the --subnet flag and what to give instead.
func CheckNetworkSubnet(spec *shoalpb.ClusterSpec, cidr string, others []*shoalpb.Network) (netip.Prefix, error) {
	pool, err := PoolOf(spec)
	if err != nil {
		return netip.Prefix{}, err
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("--subnet %q is not an IPv4 CIDR; give one such as 10.90.0.0/16", cidr)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("--subnet %s has host bits set; give %s", p, p.Masked())
	}
	if max := MaxNodeSubnetBits - pool.sliceShift(); p.Bits() > max {
		return netip.Prefix{}, fmt.Errorf("--subnet %s is too small: every node of this cluster gets a slice %d bits longer (task pool %s, node subnets /%d); give a /%d or larger",
			p, pool.sliceShift(), pool, pool.SubnetBits, max)
	}
	if p.Overlaps(pool.Prefix) {
		return netip.Prefix{}, fmt.Errorf("--subnet %s overlaps the task pool %s (the default network); give another range", p, pool)
	}
	if vips, err := VIPPoolOf(spec); err == nil && vips.Overlaps(p) {
		return netip.Prefix{}, fmt.Errorf("--subnet %s overlaps the VIP pool %s; give another range", p, vips)
	}
	for _, o := range others {
		if q, err := netip.ParsePrefix(o.GetSubnet()); err == nil && q.Overlaps(p) {
			return netip.Prefix{}, fmt.Errorf("--subnet %s overlaps network %s (%s); give another range", p, o.GetSpec().GetName(), q)
		}
	}
	return p, nil
}

// FreeNetworkSubnet returns the lowest subnet of the network pool, as long
// as the task pool, that overlaps no other network.
func FreeNetworkSubnet(spec *shoalpb.ClusterSpec, others []*shoalpb.Network) (netip.Prefix, error) {
	pool, err := PoolOf(spec)
	if err != nil {
		return netip.Prefix{}, err
	}
	netPool, err := NetworkPoolOf(spec)
	if err != nil {
		return netip.Prefix{}, err
	}
	bits := pool.Prefix.Bits()
	if bits < netPool.Bits() {
		return netip.Prefix{}, fmt.Errorf("%w: network_pool %s is smaller than one network as large as the task pool (/%d); give --subnet", ErrNoNetworkSubnet, netPool, bits)
	}
	var used []netip.Prefix
	for _, o := range others {
		if q, err := netip.ParsePrefix(o.GetSubnet()); err == nil {
			used = append(used, q)
		}
	}
	candidates := Pool{Prefix: netPool, SubnetBits: bits}
	for i := uint64(0); i < candidates.subnets(); i++ {
		c := candidates.subnet(i)
		free := true
		for _, q := range used {
			if q.Overlaps(c) {
				free = false
				break
			}
		}
		if free {
			return c, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: network pool %s is full (%d networks of /%d); remove a network or give --subnet", ErrNoNetworkSubnet, netPool, candidates.subnets(), bits)
}
