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

// nodeRecord is the node-level state SetNetworks and SetPeers made, so
// that a restarted agent can undo or repair it.
type nodeRecord struct {
	// Pool and Subnet are the record of a node from before networks (the
	// task pool and the node's subnet of it): load turns them into the
	// default network.
	Pool     string      `json:"pool,omitempty"`
	Subnet   string      `json:"subnet,omitempty"`
	Networks []netRecord `json:"networks,omitempty"`
	Routes   []peerRoute `json:"routes,omitempty"`
}

type peerRoute struct {
	Dst string `json:"dst"`
	Gw  string `json:"gw"`
}

// migrate turns an old {pool, subnet} record into the default network on
// bridge, whose layout and rules are those the old record stood for.
func (r *nodeRecord) migrate(bridge string) {
	if r.Subnet != "" && len(r.Networks) == 0 {
		r.Networks = []netRecord{{ID: DefaultID, Subnet: r.Pool, Slice: r.Subnet, Bridge: bridge}}
	}
	r.Pool, r.Subnet = "", ""
}

func (n *Network) saveNode() error {
	return jsonfile.Write(filepath.Join(n.dir, "node.json"), &n.node, 0o644)
}

// SetPeers routes every other node's slice of each network via that
// node's address, replacing the routes an earlier call made: routes to
// slices no longer listed are removed. peers holds one entry per (node,
// network slice); routes are keyed by slice. An entry with one of this
// node's slices is skipped; entries that cannot be routed (bad subnet or
// address, a slice in none of this node's networks) are skipped too and
// named in the returned error, the others applied.
func (n *Network) SetPeers(peers []*shoalpb.NodeSubnet) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.node.Networks) == 0 {
		return ErrNoSubnet
	}
	mine := map[string]bool{}
	var nets []*net.IPNet
	for i := range n.node.Networks {
		r := &n.node.Networks[i]
		mine[r.Slice] = true
		nets = append(nets, r.subnet())
	}
	inNets := func(dst *net.IPNet) bool {
		for _, s := range nets {
			ones, _ := s.Mask.Size()
			dOnes, _ := dst.Mask.Size()
			if s.Contains(dst.IP) && dOnes >= ones {
				return true
			}
		}
		return false
	}
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
		case mine[dst.String()]:
			continue // this node
		case !inNets(dst):
			bad = append(bad, fmt.Errorf("node %s: subnet %s is outside every network of this node (outside the task pool)", p.GetNodeId(), dst))
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

// destroyNodeLocked removes the peer routes, every network's rules and
// bridge (the default one's even if unrecorded), and forgets them.
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
	bridges := map[string]bool{n.bridge: true}
	for _, r := range n.node.Networks {
		bridges[r.Bridge] = true
	}
	for b := range bridges {
		if err := n.removeNet(&netRecord{Bridge: b}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: destroy: %w", err)
	}
	n.node = nodeRecord{}
	n.netsChanged.Broadcast()
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
