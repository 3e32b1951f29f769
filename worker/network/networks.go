package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"

	"github.com/vishvananda/netlink"
)

// DefaultID is the ID of the default network, the one a task without
// Task.Networks is on. Its bridge is Config.Bridge.
const DefaultID = "default"

// Def is one network as this node makes it.
type Def struct {
	// ID is the network's ID; DefaultID is the default network.
	ID string
	// Subnet is the whole network: every node's slices.
	Subnet netip.Prefix
	// Slice is this node's part of Subnet; its first host address is the
	// gateway on the network's bridge.
	Slice netip.Prefix
}

// netRecord is a network this node made, as recorded in node.json.
type netRecord struct {
	ID     string `json:"id"`
	Subnet string `json:"subnet"`
	Slice  string `json:"slice"`
	Bridge string `json:"bridge"`
	// Removing is set once SetNetworks no longer lists the network while
	// tasks of this node are still attached to it: the last one's Detach
	// (or Prune) removes it.
	Removing bool `json:"removing,omitempty"`
}

func (r *netRecord) subnet() *net.IPNet { _, s, _ := net.ParseCIDR(r.Subnet); return s }
func (r *netRecord) slice() *net.IPNet  { _, s, _ := net.ParseCIDR(r.Slice); return s }

// bridgeFor names the bridge of network id: Config.Bridge for the default
// network, else "shn" and 12 hex digits of a hash of the node's tag and the
// ID, unique per node and network on a machine (15 characters, the kernel's
// limit).
func (n *Network) bridgeFor(id string) string {
	if id == DefaultID {
		return n.bridge
	}
	sum := sha256.Sum256([]byte(n.nodeTag + "/net/" + id))
	return "shn" + hex.EncodeToString(sum[:6])
}

// netLocked returns the network id if it is made here and not being
// removed.
func (n *Network) netLocked(id string) *netRecord {
	for i := range n.node.Networks {
		if r := &n.node.Networks[i]; r.ID == id && !r.Removing {
			return r
		}
	}
	return nil
}

// Gateway returns the gateway address of network id on this node (the
// first host address of its slice, on its bridge), where the node's DNS
// server listens for that network's tasks. ok is false if SetNetworks has
// not made the network here.
func (n *Network) Gateway(id string) (addr netip.Addr, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.netLocked(id)
	if r == nil {
		return netip.Addr{}, false
	}
	a, _ := netip.AddrFromSlice(gatewayOf(r.slice()).To4())
	return a, true
}

// checkDefs validates the networks SetNetworks is given: IPv4, unique IDs,
// each slice inside its network with room for a gateway and tasks, and no
// two networks overlapping (isolation and routing tell them apart by
// address).
func checkDefs(defs []Def) error {
	seen := map[string]bool{}
	for i, d := range defs {
		if d.ID == "" {
			return fmt.Errorf("network: networks[%d] has no ID", i)
		}
		if seen[d.ID] {
			return fmt.Errorf("network: network %s is listed twice; give each network once", d.ID)
		}
		seen[d.ID] = true
		if !d.Subnet.IsValid() || !d.Subnet.Addr().Is4() {
			return fmt.Errorf("network: network %s: subnet %v is not an IPv4 CIDR like 10.64.0.0/16", d.ID, d.Subnet)
		}
		if !d.Slice.IsValid() || !d.Slice.Addr().Is4() {
			return fmt.Errorf("network: network %s: node slice %v is not an IPv4 CIDR like 10.64.3.0/24", d.ID, d.Slice)
		}
		if d.Slice.Masked() != d.Slice || d.Subnet.Masked() != d.Subnet {
			return fmt.Errorf("network: network %s: subnet %v and slice %v must have no host bits set", d.ID, d.Subnet, d.Slice)
		}
		if !d.Subnet.Contains(d.Slice.Addr()) || d.Slice.Bits() < d.Subnet.Bits() {
			return fmt.Errorf("network: network %s: node slice %v is not inside the network's subnet %v", d.ID, d.Slice, d.Subnet)
		}
		if d.Slice.Bits() > 30 {
			return fmt.Errorf("network: network %s: node slice %v is too small: it needs room for a gateway and tasks (/30 at most)", d.ID, d.Slice)
		}
		for _, e := range defs[:i] {
			if e.Subnet.Overlaps(d.Subnet) {
				return fmt.Errorf("network: networks %s (%v) and %s (%v) overlap; give every network its own addresses", e.ID, e.Subnet, d.ID, d.Subnet)
			}
		}
	}
	return nil
}

// SetNetworks makes (or repairs) one bridge per network with the gateway of
// this node's slice, and the forwarding, isolation and NAT rules for it.
// Traffic from a slice to its own network's other slices keeps its source
// address; traffic to anywhere outside every network is masqueraded;
// traffic between two networks is dropped. Calling it again with the same
// networks changes nothing. A network whose subnet or slice changed loses
// its old address and rules. A network no longer listed is removed (rules,
// bridge) at once if no task of this node is attached to it, else when the
// last such task is detached; until then no new task can attach to it.
func (n *Network) SetNetworks(defs []Def) error {
	if err := checkDefs(defs); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.waitIdleLocked()

	want := map[string]Def{}
	for _, d := range defs {
		want[d.ID] = d
	}
	var errs []error
	var next []netRecord
	for _, old := range n.node.Networks {
		d, listed := want[old.ID]
		switch {
		case listed && old.Subnet == d.Subnet.String() && old.Slice == d.Slice.String():
			continue // re-made below
		case listed:
			// Same network, other addresses: its rules name the old ones.
			if err := n.removeNetRules(&old); err != nil {
				return fmt.Errorf("network: network %s: remove the old slice %s: %w", old.ID, old.Slice, err)
			}
			n.log.Info("network slice changed", "network", old.ID, "old", old.Slice, "new", d.Slice.String())
		case n.usersLocked(old.ID) > 0:
			if !old.Removing {
				n.log.Info("network removed; kept until its last task is detached", "network", old.ID)
			}
			old.Removing = true
			next = append(next, old)
		default:
			if err := n.removeNet(&old); err != nil {
				errs = append(errs, fmt.Errorf("network %s: %w", old.ID, err))
				old.Removing = true
				next = append(next, old)
			}
		}
	}
	for _, d := range defs {
		next = append(next, netRecord{ID: d.ID, Subnet: d.Subnet.String(), Slice: d.Slice.String(), Bridge: n.bridgeFor(d.ID)})
	}
	sort.SliceStable(next, func(i, j int) bool { return next[i].ID < next[j].ID })
	// Recorded before anything is made, so that a crash leaves Destroy
	// what to undo.
	n.node.Networks = next
	n.node.Pool, n.node.Subnet = "", ""
	if err := n.saveNode(); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	n.netsChanged.Broadcast()
	if len(defs) > 0 {
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return fmt.Errorf("network: %w", err)
		}
		if err := n.ensureChains(); err != nil {
			return fmt.Errorf("network: iptables: %w", err)
		}
	}
	have := n.listNetChains()
	for i := range n.node.Networks {
		r := &n.node.Networks[i]
		if r.Removing {
			continue
		}
		if err := n.makeNet(r, have); err != nil {
			errs = append(errs, fmt.Errorf("network %s (bridge %s): %w", r.ID, r.Bridge, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// makeNet makes or repairs a network's bridge and rules.
func (n *Network) makeNet(r *netRecord, have listedRules) error {
	if err := ensureBridge(r.Bridge, r.slice()); err != nil {
		return err
	}
	// Lets a host-mode port published on 127.0.0.1 reach a task: the
	// DNATed packet keeps its loopback source until SHOAL-POSTROUTING
	// masquerades it.
	if err := writeSysctl("net/ipv4/conf/"+r.Bridge+"/route_localnet", "1"); err != nil {
		return err
	}
	if err := n.ensureNetRules(r, have); err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	return nil
}

// removeNet removes a network's rules and bridge (with the veths still on
// it).
func (n *Network) removeNet(r *netRecord) error {
	var errs []error
	if err := n.removeTaggedNetRules(r.Bridge); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLink(r.Bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// usersLocked counts the recorded tasks attached to network id.
func (n *Network) usersLocked(id string) int {
	c := 0
	for _, t := range n.tasks {
		for _, l := range t.Links {
			if l.Network == id {
				c++
				break
			}
		}
	}
	return c
}

// collectLocked removes the networks marked Removing that no recorded task
// uses any more. Detach and Prune call it.
func (n *Network) collectLocked() error {
	var errs []error
	kept := n.node.Networks[:0:0]
	changed := false
	for _, r := range n.node.Networks {
		if r.Removing && n.usersLocked(r.ID) == 0 {
			if err := n.removeNet(&r); err != nil {
				errs = append(errs, fmt.Errorf("remove network %s: %w", r.ID, err))
				kept = append(kept, r)
				continue
			}
			n.log.Info("network removed after its last task", "network", r.ID)
			changed = true
			continue
		}
		kept = append(kept, r)
	}
	if changed {
		n.node.Networks = kept
		if err := n.saveNode(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensureBridge creates the bridge name if needed, gives it exactly the
// gateway address of slice among IPv4 addresses, and sets it up.
func ensureBridge(name string, slice *net.IPNet) error {
	br, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if br, err = netlink.LinkByName(name); err != nil {
			return err
		}
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("a %s link named %s exists; choose another bridge name", br.Type(), name)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: gatewayOf(slice), Mask: slice.Mask}}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	have := false
	for _, a := range addrs {
		if a.IPNet.String() == gw.IPNet.String() {
			have = true
			continue
		}
		if err := netlink.AddrDel(br, &a); err != nil {
			return fmt.Errorf("remove old address %s: %w", a.IPNet, err)
		}
	}
	if !have {
		if err := netlink.AddrAdd(br, gw); err != nil {
			return fmt.Errorf("add gateway address %s: %w", gw.IPNet, err)
		}
	}
	return netlink.LinkSetUp(br)
}
