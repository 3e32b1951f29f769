package allocator

import (
	"fmt"
	"math/bits"
	"net/netip"

	shoalpb "shoal/proto"
)

// HoldsAddress reports whether t keeps its address from other tasks: every
// task with an address that is not known to have ended. ORPHANED keeps it:
// the task may still run on a node cut off from the managers.
func HoldsAddress(t *shoalpb.Task) bool {
	if t.GetAddress() == "" {
		return false
	}
	switch t.GetStatus().GetState() {
	case shoalpb.TaskState_TASK_STATE_COMPLETE, shoalpb.TaskState_TASK_STATE_SHUTDOWN,
		shoalpb.TaskState_TASK_STATE_FAILED, shoalpb.TaskState_TASK_STATE_REJECTED:
		return false
	}
	return true
}

// TaskAddresses are the addresses t holds, one per network (a task placed
// before networks existed holds only Task.address).
func TaskAddresses(t *shoalpb.Task) []string {
	if len(t.GetNetworks()) == 0 {
		if t.GetAddress() == "" {
			return nil
		}
		return []string{t.GetAddress()}
	}
	out := make([]string, len(t.GetNetworks()))
	for i, n := range t.GetNetworks() {
		out[i] = n.GetAddress()
	}
	return out
}

// Addresses is the free-list of one node's subnet. The network address, the
// gateway (the first host address, the node's bridge) and the broadcast
// address are never free.
type Addresses struct {
	subnet netip.Prefix
	base   uint32   // the network address
	size   uint32   // addresses in the subnet
	used   []uint64 // bit i: base+i is taken
	cursor uint32   // where the search for a free address starts
	free   uint32
}

// NewAddresses returns the free-list of subnet (a node's Node.subnet) given
// the node's tasks: those that hold an address in the subnet (HoldsAddress)
// take it. The search for a free address starts after the highest address
// taken, so an address just released is not handed out again at once (a
// stopped task's network may still be being torn down on its node).
func NewAddresses(subnet string, tasks []*shoalpb.Task) (*Addresses, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() > MaxNodeSubnetBits {
		return nil, fmt.Errorf("%w: node subnet %q is not an IPv4 CIDR of at most /%d", ErrInvalidPool, subnet, MaxNodeSubnetBits)
	}
	p = p.Masked()
	size := uint32(1) << (32 - p.Bits())
	a := &Addresses{subnet: p, base: addrToUint(p.Addr()), size: size, used: make([]uint64, (size+63)/64)}
	a.mark(0)
	a.mark(1)
	a.mark(size - 1)
	a.free = size - 3
	a.cursor = 2
	highest := uint32(0)
	for _, t := range tasks {
		if !HoldsAddress(t) {
			continue
		}
		for _, addr := range TaskAddresses(t) {
			if i, ok := a.index(addr); ok && a.hold(i) && i > highest {
				highest = i
			}
		}
	}
	if highest > 0 {
		a.cursor = highest + 1
	}
	return a, nil
}

// index is the position of addr ("10.200.3.5/24") in the subnet; false for
// an address of another subnet, a malformed one, or a reserved one.
func (a *Addresses) index(addr string) (uint32, bool) {
	ap, err := netip.ParsePrefix(addr)
	if err != nil || !a.subnet.Contains(ap.Addr()) {
		return 0, false // not this node's to give
	}
	i := addrToUint(ap.Addr()) - a.base
	if i < 2 || i == a.size-1 {
		return 0, false
	}
	return i, true
}

// hold marks i taken; false when it already was.
func (a *Addresses) hold(i uint32) bool {
	if a.taken(i) {
		return false
	}
	a.mark(i)
	a.free--
	return true
}

// Contains reports whether addr ("10.200.3.5/24") is one of the subnet's
// task addresses.
func (a *Addresses) Contains(addr string) bool {
	_, ok := a.index(addr)
	return ok
}

// Hold marks addr taken, for a task seen holding it after the free-list was
// built; false when it already was taken or is not an address of the subnet.
func (a *Addresses) Hold(addr string) bool {
	i, ok := a.index(addr)
	return ok && a.hold(i)
}

// Release makes addr free again, for a task that ended or was deleted. It
// ignores addresses of other subnets, reserved ones and free ones.
func (a *Addresses) Release(addr string) {
	if i, ok := a.index(addr); ok && a.taken(i) {
		a.used[i/64] &^= 1 << (i % 64)
		a.free++
	}
}

func (a *Addresses) taken(i uint32) bool { return a.used[i/64]&(1<<(i%64)) != 0 }
func (a *Addresses) mark(i uint32)       { a.used[i/64] |= 1 << (i % 64) }

// Subnet is the node's subnet.
func (a *Addresses) Subnet() string { return a.subnet.String() }

// Free is how many addresses are left.
func (a *Addresses) Free() int { return int(a.free) }

// Take returns a free address with the subnet's prefix length
// ("10.200.3.5/24") and marks it taken; false when none is left.
func (a *Addresses) Take() (string, bool) {
	if a.free == 0 {
		return "", false
	}
	i, ok := a.firstFree(a.cursor, a.size)
	if !ok {
		i, ok = a.firstFree(0, a.cursor)
	}
	if !ok {
		return "", false
	}
	a.mark(i)
	a.free--
	a.cursor = i + 1
	return netip.PrefixFrom(uintToAddr(a.base+i), a.subnet.Bits()).String(), true
}

// firstFree finds the lowest free index in [from, to), a word at a time.
func (a *Addresses) firstFree(from, to uint32) (uint32, bool) {
	for i := from; i < to; {
		w := ^a.used[i/64] >> (i % 64)
		if w == 0 {
			i = (i/64 + 1) * 64
			continue
		}
		j := i + uint32(bits.TrailingZeros64(w))
		if j >= to {
			return 0, false
		}
		return j, true
	}
	return 0, false
}

// ExhaustedMessage is the status message of a task that found no address
// on node.
func (a *Addresses) ExhaustedMessage(node string) string {
	return fmt.Sprintf("node %s has no free task address in %s", node, a.subnet)
}
