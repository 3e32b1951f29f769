package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where netns.NewNamed (and ip netns) bind-mount named
// namespaces.
const netnsDir = "/run/netns"

// makeNamespace creates r's named namespace and one veth pair per link:
// the host side on the link's network bridge, the other side eth<i> in the
// namespace with the link's address. eth0 gets the default route via its
// gateway, every other interface a route to its network's subnet via its
// gateway, so that traffic to another node's task on that network leaves
// by that interface with that network's address.
func (n *Network) makeNamespace(r *taskRecord, plans []linkPlan) error {
	// A leftover of a crash between creating a veth and recording it
	// would make LinkAdd fail; its name is this node's and task's alone.
	for _, l := range r.Links {
		if err := deleteLink(l.Veth); err != nil {
			return err
		}
	}
	ns, err := newNamedNS(r.NetNS)
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", r.NetNS, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", r.NetNS, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo in %s: %w", r.NetNS, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up in %s: %w", r.NetNS, err)
	}
	for i, p := range plans {
		if err := n.makeLink(h, ns, r.Links[i].Veth, fmt.Sprintf("eth%d", i), p); err != nil {
			return err
		}
	}
	return nil
}

// makeLink makes one veth pair of a task: host side veth on p's bridge,
// peer name in the namespace ns (h's).
func (n *Network) makeLink(h *netlink.Handle, ns netns.NsHandle, veth, name string, p linkPlan) error {
	br, err := netlink.LinkByName(p.bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", p.bridge, err)
	}
	link := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:        veth,
			MasterIndex: br.Attrs().Index,
			MTU:         br.Attrs().MTU,
		},
		PeerName:      name,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(link); err != nil {
		return fmt.Errorf("create veth %s: %w", veth, err)
	}
	host, err := netlink.LinkByName(veth)
	if err != nil {
		return fmt.Errorf("veth %s: %w", veth, err)
	}
	// With br_netfilter, a task's connection to a port it publishes
	// itself is DNATed while bridged and must leave by the port it came in.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("veth %s hairpin: %w", veth, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("veth %s up: %w", veth, err)
	}
	eth, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s in the task's namespace: %w", name, err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: p.addr}); err != nil {
		return fmt.Errorf("address %s on %s: %w", p.addr, name, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	// The address may be a removed task's: the node would go on sending to
	// that task's MAC until its neighbour entry expires (half a minute in
	// which the new task is unreachable from its node: health checks,
	// the mesh, the VIPs).
	stale := &netlink.Neigh{LinkIndex: br.Attrs().Index, IP: p.addr.IP}
	if err := netlink.NeighDel(stale); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("forget the old neighbour entry of %s on %s: %w", p.addr.IP, p.bridge, err)
	}
	rt := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: p.gw}
	what := "default route"
	if p.route != nil {
		rt.Dst, what = p.route, "route to "+p.route.String()
	}
	if err := h.RouteAdd(rt); err != nil {
		return fmt.Errorf("%s via %s on %s: %w", what, p.gw, name, err)
	}
	return nil
}

// newNamedNS creates a network namespace bind-mounted at netnsDir/name.
// Creating one switches the calling thread into it, so this happens on a
// locked thread of its own that switches back; if switching back fails
// the thread stays locked and Go ends it with the goroutine instead of
// running other code in the wrong namespace.
func newNamedNS(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			ch <- result{netns.None(), err}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			if err == nil {
				ns.Close()
				_ = deleteNamespace(name)
			}
			ch <- result{netns.None(), fmt.Errorf("switch back to the host namespace: %w", serr)}
			return
		}
		goruntime.UnlockOSThread()
		ch <- result{ns, err}
	}()
	r := <-ch
	return r.ns, r.err
}

// alive reports whether r's namespace is mounted and its veths exist.
func alive(r *taskRecord) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(netnsDir, r.NetNS), &st); err != nil || st.Type != unix.NSFS_MAGIC {
		return false
	}
	for _, l := range r.Links {
		if _, err := netlink.LinkByName(l.Veth); err != nil {
			return false
		}
	}
	return true
}

// deleteNamespace unmounts and removes a named namespace; a namespace that
// is not there is not an error. Processes still inside keep it alive until
// they exit.
func deleteNamespace(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace %s: %w", p, err)
	}
	return nil
}

// deleteLink deletes a link of the host's namespace if it exists; deleting
// a veth's host side deletes its peer too.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// pruneVeths deletes veths on bridge (one of this node's) not named in
// keep.
func (n *Network) pruneVeths(bridge string, keep map[string]bool) error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil // no bridge, no veths on it
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex != br.Attrs().Index || l.Type() != "veth" || keep[a.Name] {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", a.Name, err))
		}
	}
	return errors.Join(errs...)
}
