// Package allocator hands out the cluster's task addresses: a subnet of the
// task pool (ClusterSpec.task_pool) to every node that runs containers, and
// an address of its node's subnet to every task placed there.
//
// The package is pure: it computes assignments from the objects it is given
// and keeps nothing between calls. The store is the only record of what is
// taken, so a new leader needs no hand-over: its first pass reads the same
// subnets and addresses the old leader wrote.
//
//   - Node subnets are assigned by the dispatcher's liveness pass
//     (manager/dispatcher), in the same Raft write that stores the node's
//     description when its session starts: that is the moment the leader
//     learns that the node's runtime is containerd, it already reads every
//     node on each pass, and it already owns NodeStatus.message, where an
//     exhausted pool is reported. A separate loop would race the dispatcher's
//     writes of the same node object and fight it over the message.
//   - Task addresses are assigned by the orchestrator (manager/orchestrator)
//     in the same write that places the task on a node, from a free-list of
//     the node's subnet built from the node's tasks (TasksByNode) for the
//     nodes that receive a task in that pass only.
package allocator

import (
	"errors"
	"fmt"
	"net/netip"

	shoalpb "shoal/proto"
)

// Defaults of ClusterSpec.task_pool and node_subnet_bits, set at init.
const (
	DefaultTaskPool       = "10.200.0.0/16"
	DefaultNodeSubnetBits = 24
	// MinNodeSubnetBits and MaxNodeSubnetBits bound node_subnet_bits: a
	// /16 holds 65,534 task addresses, a /29 five (network, gateway and
	// broadcast are never given out).
	MinNodeSubnetBits = 16
	MaxNodeSubnetBits = 29
)

// ErrInvalidPool is wrapped by every error of ParsePool.
var ErrInvalidPool = errors.New("invalid task pool")

// Names are what a user calls the two settings in the errors of ParsePool:
// flags at init, fields in the API.
type Names struct{ Pool, Bits string }

var (
	// FlagNames names the `shoal init` flags.
	FlagNames = Names{Pool: "--task-pool", Bits: "--node-subnet-size"}
	// FieldNames names the ClusterSpec fields.
	FieldNames = Names{Pool: "task_pool", Bits: "node_subnet_bits"}
)

// Pool is a validated task pool: the CIDR and the length of each node's
// subnet.
type Pool struct {
	Prefix     netip.Prefix // masked, IPv4
	SubnetBits int
}

// ParsePool validates a task pool: an IPv4 CIDR, and a subnet length between
// MinNodeSubnetBits and MaxNodeSubnetBits that is longer than the pool's, so
// that the pool holds at least two node subnets. Errors name the setting
// (names) and what to give instead.
func ParsePool(cidr string, subnetBits uint32, names Names) (Pool, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return Pool{}, fmt.Errorf("%w: %s %q is not an IPv4 CIDR; give one such as %s", ErrInvalidPool, names.Pool, cidr, DefaultTaskPool)
	}
	if subnetBits < MinNodeSubnetBits || subnetBits > MaxNodeSubnetBits {
		return Pool{}, fmt.Errorf("%w: %s %d is out of range; give a prefix length between %d and %d (default %d)",
			ErrInvalidPool, names.Bits, subnetBits, MinNodeSubnetBits, MaxNodeSubnetBits, DefaultNodeSubnetBits)
	}
	if int(subnetBits) <= p.Bits() {
		return Pool{}, fmt.Errorf("%w: %s %d is not longer than %s %s; give a larger pool or a longer subnet prefix",
			ErrInvalidPool, names.Bits, subnetBits, names.Pool, cidr)
	}
	return Pool{Prefix: p.Masked(), SubnetBits: int(subnetBits)}, nil
}

// PoolOf returns the pool of a cluster spec; unset fields mean the defaults
// (a cluster created before the fields existed).
func PoolOf(spec *shoalpb.ClusterSpec) (Pool, error) {
	cidr, bits := spec.GetTaskPool(), spec.GetNodeSubnetBits()
	if cidr == "" {
		cidr = DefaultTaskPool
	}
	if bits == 0 {
		bits = DefaultNodeSubnetBits
	}
	return ParsePool(cidr, bits, FieldNames)
}

// String is the pool's CIDR.
func (p Pool) String() string { return p.Prefix.String() }

// subnets is how many node subnets the pool holds.
func (p Pool) subnets() uint64 { return 1 << (p.SubnetBits - p.Prefix.Bits()) }

// subnet returns the i-th node subnet of the pool.
func (p Pool) subnet(i uint64) netip.Prefix {
	base := addrToUint(p.Prefix.Addr())
	size := uint64(1) << (32 - p.SubnetBits)
	return netip.PrefixFrom(uintToAddr(base+uint32(i*size)), p.SubnetBits)
}

// index returns i such that subnet(i) == s, and whether s is a subnet of the
// pool of the right length.
func (p Pool) index(s netip.Prefix) (uint64, bool) {
	if s.Bits() != p.SubnetBits || !p.Prefix.Contains(s.Addr()) || s.Masked() != s {
		return 0, false
	}
	off := addrToUint(s.Addr()) - addrToUint(p.Prefix.Addr())
	return uint64(off >> (32 - p.SubnetBits)), true
}

func addrToUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintToAddr(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// ErrPoolFixed is wrapped by CheckPoolKept's refusal.
var ErrPoolFixed = errors.New("the task pool cannot be changed after init")

// CheckPoolKept refuses an update of the cluster spec from stored to updated
// that changes task_pool or node_subnet_bits: nodes' subnets and tasks'
// addresses were carved from them. Unset fields in updated keep the stored
// values.
func CheckPoolKept(stored, updated *shoalpb.ClusterSpec) error {
	if p := updated.GetTaskPool(); p != "" && p != stored.GetTaskPool() {
		return fmt.Errorf("%w: task_pool is %s and nodes and tasks hold addresses of it; leave it unset, or init a new cluster with --task-pool %s",
			ErrPoolFixed, stored.GetTaskPool(), p)
	}
	if b := updated.GetNodeSubnetBits(); b != 0 && b != stored.GetNodeSubnetBits() {
		return fmt.Errorf("%w: node_subnet_bits is %d and nodes hold subnets of that size; leave it unset, or init a new cluster with --node-subnet-size %d",
			ErrPoolFixed, stored.GetNodeSubnetBits(), b)
	}
	return nil
}
