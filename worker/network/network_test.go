package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// dialTimeout bounds a connection attempt that should fail, so a test does
// not hang; it is no assertion about speed.
const dialTimeout = 3 * time.Second

func task(id, addr string, ports ...*shoalpb.PortConfig) *shoalpb.Task {
	return &shoalpb.Task{Id: id, Address: addr, Spec: &shoalpb.TaskSpec{
		Container: &shoalpb.ContainerSpec{Image: "busybox"},
		Ports:     ports,
	}}
}

func attach(tb testing.TB, n *Network, t *shoalpb.Task) runtime.Attachment {
	tb.Helper()
	a, err := n.Attach(tb.Context(), t)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func TestAttachConnectsTasksAndGateway(t *testing.T) {
	n := newTestNetwork(t, "10.231.3.0/24")
	// As on a host where Docker once ran: shoal's own rules must let its
	// tasks' traffic through.
	if err := n.ipt.ChangePolicy("filter", "FORWARD", "DROP"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.ipt.ChangePolicy("filter", "FORWARD", "ACCEPT") })

	a := attach(t, n, task("taska", "10.231.3.5/24"))
	b := attach(t, n, task("taskb", "10.231.3.6/24"))
	if a.IP != "10.231.3.5" || b.IP != "10.231.3.6" {
		t.Fatalf("IPs = %s, %s; want 10.231.3.5, 10.231.3.6", a.IP, b.IP)
	}
	if !strings.HasPrefix(a.NetNSPath, "/run/netns/shoal-") {
		t.Errorf("NetNSPath = %s, want /run/netns/shoal-…", a.NetNSPath)
	}

	listenIn(t, b.NetNSPath, "0.0.0.0:7000")
	seen, err := dialFrom(t, a.NetNSPath, "10.231.3.6:7000")
	if err != nil {
		t.Fatalf("task a → task b: %v", err)
	}
	if seen != a.IP {
		t.Errorf("task b saw the connection from %s, want task a's %s", seen, a.IP)
	}

	// The gateway is the bridge's address in the host's namespace.
	l, err := net.Listen("tcp4", "10.231.3.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go serveRemoteAddr(l)
	if seen, err := dialFrom(t, a.NetNSPath, l.Addr().String()); err != nil || seen != a.IP {
		t.Fatalf("task a → gateway: saw %q, err %v", seen, err)
	}

	ok, err := n.ipt.Exists("nat", chainPostrouting, masqueradeSpec(n.bridge, testPool, "10.231.3.0/24")...)
	if err != nil || !ok {
		t.Errorf("outbound masquerade rule exists = %v, %v; want true", ok, err)
	}

	hosts, err := os.ReadFile(a.HostsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.1\tlocalhost", "::1\tlocalhost", "10.231.3.5\ttaska"} {
		if !strings.Contains(string(hosts), want) {
			t.Errorf("hosts file lacks %q:\n%s", want, hosts)
		}
	}
	resolv, err := os.ReadFile(a.ResolvConfPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(resolv) != "nameserver 192.0.2.53\n" {
		t.Errorf("resolv.conf = %q, want Config.DNS's nameserver", resolv)
	}

	again := attach(t, n, task("taska", "10.231.3.5/24"))
	if again != a {
		t.Errorf("second Attach = %+v, want the first's %+v", again, a)
	}

	// A reboot empties /run/netns but keeps the records: Attach remakes.
	if err := deleteLink(n.vethName("taska")); err != nil {
		t.Fatal(err)
	}
	if err := deleteNamespace(filepath.Base(a.NetNSPath)); err != nil {
		t.Fatal(err)
	}
	if again := attach(t, n, task("taska", "10.231.3.5/24")); again != a {
		t.Errorf("Attach after a reboot = %+v, want %+v", again, a)
	}
	if seen, err := dialFrom(t, a.NetNSPath, "10.231.3.6:7000"); err != nil || seen != a.IP {
		t.Errorf("task a remade → task b: seen from %q, %v", seen, err)
	}
}

func TestAttachRefusesBadAddresses(t *testing.T) {
	testutil.RequireRoot(t)
	n := newTestNetworkAt(t, t.TempDir(), fmt.Sprintf("shtest%d", bridgeSeq.Add(1)))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := n.Attach(ctx, task("t1", "10.231.4.5/24")); !errors.Is(err, ErrUnknownNetwork) || !strings.Contains(err.Error(), DefaultID) {
		t.Errorf("Attach before SetNetworks: %v, want ErrUnknownNetwork naming the default network", err)
	}
	if err := n.SetNetworks(defaultNet("10.231.4.0/24")); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"", "10.231.5.5/24", "10.231.4.5/16", "10.231.4.1/24", "10.231.4.255/24", "10.231.4.5", "nonsense"} {
		_, err := n.Attach(t.Context(), task("t1", addr))
		if !errors.Is(err, ErrBadAddress) {
			t.Errorf("Attach with address %q: %v, want ErrBadAddress", addr, err)
		} else if !strings.Contains(err.Error(), "t1") {
			t.Errorf("error %q does not name the task", err)
		}
	}
	if _, err := n.Attach(t.Context(), task("../x", "10.231.4.5/24")); err == nil {
		t.Error("Attach with task ID ../x succeeded")
	}
	if left, _ := os.ReadDir(filepath.Join(n.dir, "tasks")); len(left) != 0 {
		t.Errorf("refused attaches left %d task directories", len(left))
	}
}

func TestPublishedHostPort(t *testing.T) {
	n := newTestNetwork(t, "10.231.6.0/24")
	hostIP := addDummy(t, "shtesthost", "192.0.2.10/24")

	ports := []*shoalpb.PortConfig{
		{Protocol: "tcp", TargetPort: 80, PublishedPort: 18080, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST},
		{Protocol: "tcp", TargetPort: 81, PublishedPort: 0, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST},
		{Protocol: "tcp", TargetPort: 82, PublishedPort: 18082, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS},
	}
	a := attach(t, n, task("webtask", "10.231.6.7/24", ports...))
	listenIn(t, a.NetNSPath, "0.0.0.0:80")
	for _, addr := range []string{hostIP + ":18080", "127.0.0.1:18080"} {
		if _, err := dialFrom(t, "", addr); err != nil {
			t.Errorf("host → %s (published to the task's port 80): %v", addr, err)
		}
	}
	// Tasks of the node reach the published port through the host's
	// address too, the publishing task included.
	client := attach(t, n, task("client", "10.231.6.8/24"))
	for _, from := range []string{client.NetNSPath, a.NetNSPath} {
		if seen, err := dialFrom(t, from, hostIP+":18080"); err != nil || seen != "10.231.6.1" {
			t.Errorf("%s → %s:18080: seen from %q, %v; want the gateway 10.231.6.1", from, hostIP, seen, err)
		}
	}
	if got := countRules(t, n, "nat", chainPorts); got != 1 {
		t.Errorf("%d port rules, want 1 (only the host-mode port with a published port)", got)
	}

	if _, err := n.Attach(t.Context(), task("other", "10.231.6.9/24", ports[0])); !errors.Is(err, ErrPortInUse) {
		t.Errorf("second task publishing 18080: %v, want ErrPortInUse", err)
	}

	if err := n.Detach(t.Context(), "webtask"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n, "webtask", a)
	if _, err := dialFrom(t, "", hostIP+":18080"); err == nil {
		t.Error("published port still answers after Detach")
	}
	if err := n.Detach(t.Context(), "webtask"); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	if err := n.Detach(t.Context(), "never-attached"); err != nil {
		t.Errorf("Detach of an unknown task: %v", err)
	}
}

// assertGone checks Detach removed the task's namespace, veth, rules and
// files.
func assertGone(tb testing.TB, n *Network, id string, a runtime.Attachment) {
	tb.Helper()
	if _, err := os.Stat(a.NetNSPath); !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("namespace %s still exists (%v)", a.NetNSPath, err)
	}
	if _, err := netlink.LinkByName(n.vethName(id)); err == nil {
		tb.Errorf("veth %s still exists", n.vethName(id))
	}
	if _, err := os.Stat(n.taskDir(id)); !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("task directory %s still exists (%v)", n.taskDir(id), err)
	}
	if got := countTagged(tb, n, "nat", chainPorts, n.taskComment(id)); got != 0 {
		tb.Errorf("%d port rules of task %s left", got, id)
	}
}

// addDummy gives the test's namespace an address standing in for the
// node's host address, on an empty bridge (this kernel has no dummy
// links).
func addDummy(tb testing.TB, name, cidr string) string {
	tb.Helper()
	d := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(d); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = deleteLink(name) })
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		tb.Fatal(err)
	}
	if err := netlink.AddrAdd(d, addr); err != nil {
		tb.Fatal(err)
	}
	if err := netlink.LinkSetUp(d); err != nil {
		tb.Fatal(err)
	}
	return addr.IP.String()
}

// countRules counts the rules of n's bridge in table/chain.
func countRules(tb testing.TB, n *Network, table, chain string) int {
	return countTagged(tb, n, table, chain, "shoal:"+n.bridge+":")
}

func countTagged(tb testing.TB, n *Network, table, chain, prefix string) int {
	tb.Helper()
	rules, err := n.ipt.List(table, chain)
	if err != nil {
		tb.Fatal(err)
	}
	c := 0
	for _, r := range rules {
		if strings.HasPrefix(commentOf(splitRule(r)), prefix) {
			c++
		}
	}
	return c
}

func TestSetNetworksIsIdempotentAndReplacesTheOld(t *testing.T) {
	n := newTestNetwork(t, "10.231.7.0/24")
	count := func() [5]int {
		njumps := 0
		for _, j := range jumps {
			rules, err := n.ipt.List(j.table, j.chain)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				if strings.Contains(r, "-j SHOAL-") && !strings.Contains(r, "--comment") {
					njumps++
				}
			}
		}
		return [5]int{countRules(t, n, "filter", chainForward), countRules(t, n, "filter", chainIsolate) + countRules(t, n, "filter", chainIsolateDst), countRules(t, n, "nat", chainPostrouting), countRules(t, n, "nat", chainPorts), njumps}
	}
	first := count()
	if first != [5]int{2, 2, 3, 0, 5} {
		t.Fatalf("rules (forward, isolate, postrouting, ports, jumps) = %v, want [2 2 3 0 5]", first)
	}
	// A second call finds every rule in one listing per chain.
	have := n.listNetChains()
	for _, r := range netRules(n.netLocked(DefaultID)) {
		if !have[r.table+" "+r.chain][strings.Join(r.spec, " ")] {
			t.Errorf("rule %v is not found as such in the listing of %s %s: %v", r.spec, r.table, r.chain, have[r.table+" "+r.chain])
		}
	}
	if err := n.SetNetworks(defaultNet("10.231.7.0/24")); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != first {
		t.Errorf("after a second SetNetworks rules = %v, want %v", got, first)
	}

	if err := n.SetNetworks(defaultNet("10.231.8.0/24")); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != first {
		t.Errorf("after changing the slice rules = %v, want %v", got, first)
	}
	if ok, _ := n.ipt.Exists("nat", chainPostrouting, masqueradeSpec(n.bridge, testPool, "10.231.7.0/24")...); ok {
		t.Error("the old slice's masquerade rule is still there")
	}
	if ok, _ := n.ipt.Exists("nat", chainPostrouting, masqueradeSpec(n.bridge, testPool, "10.231.8.0/24")...); !ok {
		t.Error("the new slice has no masquerade rule")
	}
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.231.8.1/24" {
		t.Errorf("bridge addresses = %v, want only 10.231.8.1/24", addrs)
	}
	if gw, ok := n.Gateway(DefaultID); !ok || gw.String() != "10.231.8.1" {
		t.Errorf("Gateway(default) = %v, %v; want 10.231.8.1", gw, ok)
	}
	if _, ok := n.Gateway("nonesuch"); ok {
		t.Error("Gateway of a network not made here is ok")
	}

	p := netip.MustParsePrefix
	for _, bad := range [][]Def{
		{{ID: DefaultID, Subnet: p(testPool), Slice: p("10.232.1.0/24")}},
		{{ID: DefaultID, Subnet: p(testPool)}},
		{{ID: DefaultID, Subnet: p(testPool), Slice: p("10.231.1.0/31")}},
		{{ID: "", Subnet: p(testPool), Slice: p("10.231.1.0/24")}},
		defaultNet("10.231.1.0/24", Def{ID: DefaultID, Subnet: p("10.240.0.0/16"), Slice: p("10.240.1.0/24")}),
		defaultNet("10.231.1.0/24", Def{ID: "b", Subnet: p("10.231.128.0/17"), Slice: p("10.231.129.0/24")}),
	} {
		if err := n.SetNetworks(bad); err == nil {
			t.Errorf("SetNetworks(%v) succeeded", bad)
		}
	}
	if got := count(); got != first {
		t.Errorf("after refused SetNetworks rules = %v, want %v", got, first)
	}
}

func TestSetPeersReplacesOnlyItsRoutes(t *testing.T) {
	n := newTestNetwork(t, "10.231.9.0/24")
	// Peers are reached through the host's network.
	addDummy(t, "shtestpeers", "192.0.2.1/24")

	// A route of shoal's protocol another node on this host made: never ours
	// to remove.
	_, foreign, _ := net.ParseCIDR("10.231.99.0/24")
	other := &netlink.Route{Dst: foreign, Gw: net.ParseIP("192.0.2.99"), Protocol: RouteProtocol}
	if err := netlink.RouteAdd(other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.RouteDel(other) })

	peers := func(ps ...string) []*shoalpb.NodeSubnet {
		var out []*shoalpb.NodeSubnet
		for i := 0; i < len(ps); i += 2 {
			out = append(out, &shoalpb.NodeSubnet{NodeId: ps[i], Subnet: ps[i+1][:strings.Index(ps[i+1], "@")], Ip: ps[i+1][strings.Index(ps[i+1], "@")+1:]})
		}
		return out
	}
	routes := func() map[string]string {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range rs {
			m[r.Dst.String()] = r.Gw.String()
		}
		return m
	}
	set := peers("self", "10.231.9.0/24@192.0.2.1", "b", "10.231.10.0/24@192.0.2.2", "c", "10.231.11.0/24@192.0.2.3")
	for range 2 {
		if err := n.SetPeers(set); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"10.231.10.0/24": "192.0.2.2", "10.231.11.0/24": "192.0.2.3", "10.231.99.0/24": "192.0.2.99"}
		if got := routes(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("routes = %v, want %v", got, want)
		}
	}
	// c leaves, b moves, d joins.
	if err := n.SetPeers(peers("b", "10.231.10.0/24@192.0.2.4", "d", "10.231.12.0/24@192.0.2.5")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"10.231.10.0/24": "192.0.2.4", "10.231.12.0/24": "192.0.2.5", "10.231.99.0/24": "192.0.2.99"}
	if got := routes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after replacing the peers routes = %v, want %v", got, want)
	}
	if err := n.SetPeers(peers("e", "10.232.0.0/24@192.0.2.6")); err == nil || !strings.Contains(err.Error(), "outside the task pool") {
		t.Errorf("peer outside the pool: %v, want an error saying so", err)
	}
	if err := n.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	if got := routes(); len(got) != 1 {
		t.Errorf("after SetPeers(nil) routes = %v, want only the other node's", got)
	}
}

func TestPruneRemovesOnlyOrphans(t *testing.T) {
	dir := t.TempDir()
	bridge := fmt.Sprintf("shtest%d", bridgeSeq.Add(1))
	n := newTestNetworkAt(t, dir, bridge)
	if err := n.SetNetworks(defaultNet("10.231.13.0/24")); err != nil {
		t.Fatal(err)
	}
	port := &shoalpb.PortConfig{Protocol: "udp", TargetPort: 53, PublishedPort: 15353}
	keep := attach(t, n, task("keep", "10.231.13.2/24"))
	gone := attach(t, n, task("gone", "10.231.13.3/24", port))

	// Another node's namespace in the shared /run/netns.
	foreign, err := newNamedNS(fmt.Sprintf("shoal-othernode-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	foreign.Close()
	foreignPath := filepath.Join(netnsDir, fmt.Sprintf("shoal-othernode-%d", os.Getpid()))
	t.Cleanup(func() { _ = deleteNamespace(filepath.Base(foreignPath)) })

	// A rule of a task this node no longer knows.
	stale := &taskRecord{TaskID: "stale", Links: []taskLink{{Network: DefaultID, Address: "10.231.13.9/24"}}}
	if err := n.ipt.Append("nat", chainPorts, n.portSpec(stale, portRule{"tcp", 19999, 80})...); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of an Attach: the record says not complete.
	// It is in the format from before networks (one veth and address).
	half := &taskRecord{TaskID: "half", NetNS: "shoal-" + n.nodeTag + "-half", Veth: n.vethName("half"), Address: "10.231.13.4/24"}
	if err := n.saveTask(half); err != nil {
		t.Fatal(err)
	}
	if _, err := newNamedNS(half.NetNS); err != nil {
		t.Fatal(err)
	}

	// The agent restarts.
	n2, err := New(Config{DataDir: dir, Bridge: bridge})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Prune(t.Context(), map[string]bool{"keep": true}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n2, "gone", gone)
	assertGone(t, n2, "half", runtime.Attachment{NetNSPath: filepath.Join(netnsDir, half.NetNS)})
	if got := countTagged(t, n2, "nat", chainPorts, n2.taskComment("stale")); got != 0 {
		t.Errorf("%d rules of the unknown task left", got)
	}
	if _, err := os.Stat(foreignPath); err != nil {
		t.Errorf("another node's namespace was removed: %v", err)
	}
	again, err := n2.Attach(t.Context(), task("keep", "10.231.13.2/24"))
	if err != nil || again != keep {
		t.Errorf("the kept task after restart and prune: %+v, %v; want %+v", again, err, keep)
	}
	if _, err := os.Stat(keep.NetNSPath); err != nil {
		t.Errorf("the kept task's namespace: %v", err)
	}
	if _, err := netlink.LinkByName(n2.vethName("keep")); err != nil {
		t.Errorf("the kept task's veth: %v", err)
	}
	// n (the same node before the restart) destroys at cleanup; make it
	// forget what n2 now owns.
	n.tasks = map[string]*taskRecord{}
	t.Cleanup(func() {
		if err := n2.Destroy(t.Context()); err != nil {
			t.Error(err)
		}
	})
}

// snapshot counts what a Network can leave behind on the host.
type snapshot struct{ netns, links, rules, files int }

func takeSnapshot(tb testing.TB, n *Network) snapshot {
	tb.Helper()
	var s snapshot
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "shoal-"+n.nodeTag) {
			s.netns++
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		tb.Fatal(err)
	}
	s.links = len(links)
	s.rules = countRules(tb, n, "nat", chainPorts) + countRules(tb, n, "nat", chainPostrouting) + countRules(tb, n, "filter", chainForward) +
		countRules(tb, n, "filter", chainIsolate) + countRules(tb, n, "filter", chainIsolateDst)
	_ = filepath.WalkDir(n.dir, func(string, os.DirEntry, error) error { s.files++; return nil })
	return s
}

func TestChurnLeavesNothing(t *testing.T) {
	n := newTestNetwork(t, "10.231.14.0/24")
	before := takeSnapshot(t, n)
	rounds := 1000
	if testing.Short() {
		rounds = 100
	}
	for i := range rounds {
		id := fmt.Sprintf("churn%d", i)
		var ports []*shoalpb.PortConfig
		if i%10 == 0 { // rules too, at a tenth of the rounds: iptables is slow
			ports = append(ports, &shoalpb.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 20000})
		}
		attach(t, n, task(id, fmt.Sprintf("10.231.14.%d/24", 2+i%250), ports...))
		if err := n.Detach(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if after := takeSnapshot(t, n); after != before {
		t.Errorf("after %d Attach/Detach (netns, links, rules, files) = %+v, before %+v", rounds, after, before)
	}
}

func BenchmarkAttachDetach(b *testing.B) {
	n := newTestNetwork(b, "10.231.15.0/24")
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("bench%d", i)
		if _, err := n.Attach(b.Context(), task(id, fmt.Sprintf("10.231.15.%d/24", 2+i%250))); err != nil {
			b.Fatal(err)
		}
		if err := n.Detach(b.Context(), id); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkAttachDetachWithPort(b *testing.B) {
	n := newTestNetwork(b, "10.231.16.0/24")
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("bench%d", i)
		p := &shoalpb.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 20001}
		if _, err := n.Attach(b.Context(), task(id, fmt.Sprintf("10.231.16.%d/24", 2+i%250), p)); err != nil {
			b.Fatal(err)
		}
		if err := n.Detach(b.Context(), id); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
