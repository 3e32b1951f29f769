package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"shoal/internal/jsonfile"
	shoalpb "shoal/proto"
)

// RouteProtocol marks the routes SetPeers adds (rtnetlink's protocol
// field, unused by the kernel and the usual routing daemons), so that only
// shoal's routes are ever replaced or removed.
const RouteProtocol netlink.RouteProtocol = 0x5b

// nodeRecord is the node-level state SetSubnet and SetPeers made, so that
// a restarted agent can undo it when the manager hands out something new.
type nodeRecord struct {
	Pool   string      `json:"pool,omitempty"`
	Subnet string      `json:"subnet,omitempty"`
	Routes []peerRoute `json:"routes,omitempty"`
}

type peerRoute struct {
	Dst string `json:"dst"`
	Gw  string `json:"gw"`
}

func (n *Network) saveNode() error {
	return jsonfile.Write(filepath.Join(n.dir, "node.json"), &n.node, 0o644)
}

func (n *Network) subnetLocked() (*net.IPNet, error) {
	if n.node.Subnet == "" {
		return nil, ErrNoSubnet
	}
	_, s, err := net.ParseCIDR(n.node.Subnet)
	return s, err
}

// SetSubnet makes (or repairs) the node's bridge with the first address of
// subnet as the tasks' gateway, and the forwarding and NAT rules for it.
// pool is the whole cluster's task pool: traffic from subnet to another
// address of pool keeps its source address, traffic elsewhere is
// masqueraded. Calling it again with the same values changes nothing;
// with another subnet, the old one's address and rule are removed.
func (n *Network) SetSubnet(pool, subnet string) error {
	_, poolNet, err := net.ParseCIDR(pool)
	if err != nil || poolNet.IP.To4() == nil {
		return fmt.Errorf("network: task pool %q is not an IPv4 CIDR like 10.200.0.0/16", pool)
	}
	_, sub, err := net.ParseCIDR(subnet)
	if err != nil || sub.IP.To4() == nil {
		return fmt.Errorf("network: node subnet %q is not an IPv4 CIDR like 10.200.3.0/24", subnet)
	}
	pOnes, _ := poolNet.Mask.Size()
	sOnes, _ := sub.Mask.Size()
	if !poolNet.Contains(sub.IP) || sOnes < pOnes {
		return fmt.Errorf("network: node subnet %s is not inside the task pool %s", sub, poolNet)
	}
	if sOnes > 30 {
		return fmt.Errorf("network: node subnet %s is too small: it needs room for a gateway and tasks (/30 at most)", sub)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.waitIdleLocked()

	if n.node.Subnet != "" && (n.node.Subnet != sub.String() || n.node.Pool != poolNet.String()) {
		if err := n.removeSubnetRules(n.node.Pool, n.node.Subnet); err != nil {
			return fmt.Errorf("network: remove the old subnet %s: %w", n.node.Subnet, err)
		}
		n.log.Info("task subnet changed", "old", n.node.Subnet, "new", sub.String())
	}
	n.node.Pool, n.node.Subnet = poolNet.String(), sub.String()
	if err := n.saveNode(); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := n.ensureBridge(sub); err != nil {
		return fmt.Errorf("network: bridge %s: %w", n.bridge, err)
	}
	if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	// Lets a host-mode port published on 127.0.0.1 reach a task: the
	// DNATed packet keeps its loopback source until SHOAL-POSTROUTING
	// masquerades it.
	if err := writeSysctl("net/ipv4/conf/"+n.bridge+"/route_localnet", "1"); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := n.ensureChains(); err != nil {
		return fmt.Errorf("network: iptables: %w", err)
	}
	if err := n.ensureNodeRules(poolNet, sub); err != nil {
		return fmt.Errorf("network: iptables: %w", err)
	}
	return nil
}

// ensureBridge creates the bridge if needed, gives it exactly the gateway
// address among IPv4 addresses, and sets it up.
func (n *Network) ensureBridge(sub *net.IPNet) error {
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.bridge}}); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if br, err = netlink.LinkByName(n.bridge); err != nil {
			return err
		}
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("a %s link named %s exists; choose another bridge name", br.Type(), n.bridge)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: gatewayOf(sub), Mask: sub.Mask}}
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

// SetPeers routes every other node's task subnet via that node's address,
// replacing the routes an earlier call made: routes to nodes no longer
// listed are removed. A peer with this node's subnet is skipped; peers
// that cannot be routed (bad subnet or address, subnet outside the pool)
// are skipped too and named in the returned error, the others applied.
func (n *Network) SetPeers(peers []*shoalpb.NodeSubnet) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.node.Subnet == "" {
		return ErrNoSubnet
	}
	_, poolNet, _ := net.ParseCIDR(n.node.Pool)
	want := map[string]peerRoute{}
	var bad []error
	for _, p := range peers {
		_, dst, err := net.ParseCIDR(p.GetSubnet())
		gw := net.ParseIP(p.GetIp())
		switch {
		case err != nil || dst.IP.To4() == nil:
			bad = append(bad, fmt.Errorf("node %s: subnet %q is not an IPv4 CIDR", p.GetNodeId(), p.GetSubnet()))
			continue
		case gw == nil || gw.To4() == nil:
			bad = append(bad, fmt.Errorf("node %s: address %q is not an IPv4 address", p.GetNodeId(), p.GetIp()))
			continue
		case dst.String() == n.node.Subnet:
			continue // this node
		case !poolNet.Contains(dst.IP):
			bad = append(bad, fmt.Errorf("node %s: subnet %s is outside the task pool %s", p.GetNodeId(), dst, poolNet))
			continue
		}
		want[dst.String()] = peerRoute{Dst: dst.String(), Gw: gw.String()}
	}
	// Record the union first: a crash half way must not forget a route
	// this node added.
	union := map[string]peerRoute{}
	for _, r := range n.node.Routes {
		union[r.Dst+" "+r.Gw] = r
	}
	for _, r := range want {
		union[r.Dst+" "+r.Gw] = r
	}
	n.node.Routes = sortedRoutes(union)
	if err := n.saveNode(); err != nil {
		return fmt.Errorf("network: %w", err)
	}

	var errs []error
	for _, r := range want {
		_, dst, _ := net.ParseCIDR(r.Dst)
		rt := &netlink.Route{Dst: dst, Gw: net.ParseIP(r.Gw), Protocol: RouteProtocol}
		if err := netlink.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", r.Dst, r.Gw, err))
		}
	}
	// Remove routes of shoal's protocol to subnets no longer wanted, but
	// only those this node recorded: another node on the same host has
	// routes of the same protocol.
	recorded := map[string]bool{}
	for _, r := range n.node.Routes {
		recorded[r.Dst] = true
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		errs = append(errs, fmt.Errorf("list routes: %w", err))
	}
	for _, rt := range routes {
		if rt.Dst == nil || !recorded[rt.Dst.String()] {
			continue
		}
		if w, ok := want[rt.Dst.String()]; ok && rt.Gw.Equal(net.ParseIP(w.Gw)) {
			continue
		}
		if err := netlink.RouteDel(&rt); err != nil {
			errs = append(errs, fmt.Errorf("remove route %s: %w", rt.Dst, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: peers: %w", err)
	}
	n.node.Routes = sortedRoutes(want)
	if err := n.saveNode(); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return errors.Join(bad...)
}

func sortedRoutes(m map[string]peerRoute) []peerRoute {
	out := make([]peerRoute, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Dst != out[j].Dst {
			return out[i].Dst < out[j].Dst
		}
		return out[i].Gw < out[j].Gw
	})
	return out
}

// destroyNodeLocked removes the peer routes, this bridge's rules and the
// bridge, and forgets the subnet.
func (n *Network) destroyNodeLocked() error {
	var errs []error
	for _, r := range n.node.Routes {
		_, dst, err := net.ParseCIDR(r.Dst)
		if err != nil {
			continue
		}
		rt := &netlink.Route{Dst: dst, Gw: net.ParseIP(r.Gw), Protocol: RouteProtocol}
		if err := netlink.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", r.Dst, err))
		}
	}
	if n.node.Subnet != "" {
		if err := n.removeSubnetRules(n.node.Pool, n.node.Subnet); err != nil {
			errs = append(errs, err)
		}
	}
	if err := n.removeNodeRules(); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLink(n.bridge); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: destroy: %w", err)
	}
	n.node = nodeRecord{}
	return n.saveNode()
}

func gatewayOf(sub *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	copy(ip, sub.IP.To4())
	ip[3]++
	return ip
}

func broadcastOf(sub *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	base := sub.IP.To4()
	for i := range ip {
		ip[i] = base[i] | ^sub.Mask[i]
	}
	return ip
}

func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", key)
	if b, err := os.ReadFile(p); err == nil && string(b) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}
