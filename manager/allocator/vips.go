package allocator

import (
	"errors"
	"fmt"
	"net/netip"

	shoalpb "shoal/proto"
)

// DefaultVIPPool is where services' virtual IPs come from when the cluster
// spec names no pool: beside, and outside, the default task pool.
const DefaultVIPPool = "10.201.0.0/16"

// ErrNoVIP is returned when the VIP pool has no free address.
var ErrNoVIP = errors.New("no free virtual IP")

// VIPPoolOf is the cluster's VIP pool (ClusterSpec.vip_pool or the default).
// It is an IPv4 prefix of at most /30 that does not overlap the task pool.
func VIPPoolOf(spec *shoalpb.ClusterSpec) (netip.Prefix, error) {
	cidr := spec.GetVipPool()
	if cidr == "" {
		cidr = DefaultVIPPool
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("%w: vip_pool %q is not an IPv4 CIDR of at most /30; give one such as %s", ErrInvalidPool, cidr, DefaultVIPPool)
	}
	p = p.Masked()
	if tasks, err := PoolOf(spec); err == nil && tasks.Prefix.Overlaps(p) {
		return netip.Prefix{}, fmt.Errorf("%w: vip_pool %s overlaps task_pool %s; give pools that do not overlap", ErrInvalidPool, p, tasks)
	}
	return p, nil
}

// FreeVIP returns a free address of pool, skipping its network and
// broadcast addresses: the lowest one when skip is 0, else the (skip+1)-th
// lowest, or the highest free one when there are fewer. Callers racing
// for addresses (creates through several managers) skip further on each
// retry. Services are created rarely and a pool holds at most a few
// thousand of them in practice, so a scan from the bottom beats keeping a
// book in step with the store.
func FreeVIP(pool netip.Prefix, used map[netip.Addr]bool, skip int) (netip.Addr, error) {
	base := addrToUint(pool.Addr())
	size := uint64(1) << (32 - pool.Bits())
	var found netip.Addr
	for i := uint64(1); i < size-1; i++ {
		a := uintToAddr(base + uint32(i))
		if used[a] {
			continue
		}
		found = a
		if skip == 0 {
			break
		}
		skip--
	}
	if !found.IsValid() {
		return netip.Addr{}, fmt.Errorf("%w: every address of the VIP pool %s is taken; remove services or use --endpoint-mode dnsrr", ErrNoVIP, pool)
	}
	return found, nil
}
