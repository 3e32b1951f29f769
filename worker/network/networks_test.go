package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"shoal/internal/jsonfile"
	shoalpb "shoal/proto"
)

// blockedTimeout bounds a connection that isolation must drop: a dropped
// SYN is never answered, so the dial times out; long enough for a reply
// on a local bridge, short enough to keep tests quick.
const blockedTimeout = 300 * time.Millisecond

// netTask is a task on networks given as ID, address, ID, address…, the
// primary first.
func netTask(id string, nets ...string) *shoalpb.Task {
	t := task(id, "")
	for i := 0; i+1 < len(nets); i += 2 {
		t.Networks = append(t.Networks, &shoalpb.TaskNetwork{NetworkId: nets[i], Address: nets[i+1]})
	}
	return t
}

func blueNet(slice string) Def {
	return Def{ID: "blue", Subnet: netip.MustParsePrefix("10.232.0.0/16"), Slice: netip.MustParsePrefix(slice)}
}

// expectReach dials from the namespace at from to addr and checks the
// listener saw want as the source address.
func expectReach(tb testing.TB, what, from, addr, want string) {
	tb.Helper()
	if seen, err := dialFrom(tb, from, addr); err != nil || seen != want {
		tb.Errorf("%s: seen from %q, %v; want a connection from %s", what, seen, err, want)
	}
}

func expectBlocked(tb testing.TB, what, from, addr string) {
	tb.Helper()
	if seen, err := dialFromTimeout(tb, from, addr, blockedTimeout); err == nil {
		tb.Errorf("%s: connected (seen from %s); want it dropped", what, seen)
	}
}

func TestNetworksIsolateOnOneNode(t *testing.T) {
	n := newTestNetworkAt(t, t.TempDir(), fmt.Sprintf("shtest%d", bridgeSeq.Add(1)))
	if err := n.SetNetworks(defaultNet("10.231.30.0/24", blueNet("10.232.30.0/24"))); err != nil {
		t.Fatal(err)
	}
	if err := n.ipt.ChangePolicy("filter", "FORWARD", "DROP"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.ipt.ChangePolicy("filter", "FORWARD", "ACCEPT") })

	a1 := attach(t, n, task("a1", "10.231.30.2/24"))
	a2 := attach(t, n, netTask("a2", DefaultID, "10.231.30.3/24"))
	b1 := attach(t, n, netTask("b1", "blue", "10.232.30.2/24"))
	ab := attach(t, n, netTask("ab", DefaultID, "10.231.30.4/24", "blue", "10.232.30.3/24"))
	// The node's DNS scopes a querier by the networks of its task.
	for addr, want := range map[string][]string{"10.232.30.3": {DefaultID, "blue"}, "10.231.30.4": {DefaultID, "blue"}, "10.232.30.2": {"blue"}} {
		if got, ok := n.NetworksOf(netip.MustParseAddr(addr)); !ok || !slices.Equal(got, want) {
			t.Errorf("NetworksOf(%s) = %v, %v; want %v", addr, got, ok, want)
		}
	}
	if got, ok := n.NetworksOf(netip.MustParseAddr("10.231.30.99")); ok {
		t.Errorf("NetworksOf an address of no task = %v, want none", got)
	}
	if ab.IP != "10.231.30.4" || b1.IP != "10.232.30.2" {
		t.Errorf("Attachment.IP of ab, b1 = %s, %s; want the primary addresses 10.231.30.4, 10.232.30.2", ab.IP, b1.IP)
	}
	for _, a := range []string{a1.NetNSPath, a2.NetNSPath, b1.NetNSPath, ab.NetNSPath} {
		listenIn(t, a, "0.0.0.0:7000")
	}

	expectReach(t, "a1 → a2", a1.NetNSPath, "10.231.30.3:7000", "10.231.30.2")
	expectReach(t, "ab → b1 on blue", ab.NetNSPath, "10.232.30.2:7000", "10.232.30.3")
	expectReach(t, "ab → a1 on the default network", ab.NetNSPath, "10.231.30.2:7000", "10.231.30.4")
	expectReach(t, "b1 → ab on blue", b1.NetNSPath, "10.232.30.3:7000", "10.232.30.2")
	expectBlocked(t, "a1 → b1", a1.NetNSPath, "10.232.30.2:7000")
	expectBlocked(t, "b1 → a1", b1.NetNSPath, "10.231.30.2:7000")
	expectBlocked(t, "b1 → ab's default address", b1.NetNSPath, "10.231.30.4:7000")

	// The host (the node's DNS, mesh) reaches tasks of every network, and
	// they reach it on their gateway.
	expectReach(t, "host → b1", "", "10.232.30.2:7000", "10.232.30.1")
	gw, ok := n.Gateway("blue")
	if !ok || gw.String() != "10.232.30.1" {
		t.Fatalf("Gateway(blue) = %v, %v; want 10.232.30.1", gw, ok)
	}
	l, err := net.Listen("tcp4", gw.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go serveRemoteAddr(l)
	expectReach(t, "b1 → its gateway", b1.NetNSPath, l.Addr().String(), "10.232.30.2")

	// The drop is isolation's doing, not a missing route: without the
	// jump to SHOAL-ISOLATE a1 reaches b1; SetNetworks repairs it.
	if err := n.ipt.Delete("filter", chainForward, "-j", chainIsolate); err != nil {
		t.Fatal(err)
	}
	if _, err := dialFrom(t, a1.NetNSPath, "10.232.30.2:7000"); err != nil {
		t.Errorf("a1 → b1 without isolation: %v; want a connection", err)
	}
	if err := n.SetNetworks(defaultNet("10.231.30.0/24", blueNet("10.232.30.0/24"))); err != nil {
		t.Fatal(err)
	}
	expectBlocked(t, "a1 → b1 after SetNetworks repaired the rules", a1.NetNSPath, "10.232.30.2:7000")

	hosts, err := os.ReadFile(ab.HostsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.231.30.4\tab", "10.232.30.3\tab"} {
		if !strings.Contains(string(hosts), want) {
			t.Errorf("ab's hosts file lacks %q:\n%s", want, hosts)
		}
	}
	if again := attach(t, n, netTask("ab", DefaultID, "10.231.30.4/24", "blue", "10.232.30.3/24")); again != ab {
		t.Errorf("second Attach of ab = %+v, want %+v", again, ab)
	}
	if err := n.Detach(t.Context(), "ab"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n, "ab", ab)
	if _, err := netlink.LinkByName(n.extraVethName("ab", "blue")); err == nil {
		t.Error("ab's veth on blue is still there after Detach")
	}
}

func TestClusterDNSIsThePrimaryGateway(t *testing.T) {
	n := newTestNetworkAt(t, t.TempDir(), fmt.Sprintf("shtest%d", bridgeSeq.Add(1)))
	n.clusterDNS = true
	if err := n.SetNetworks(defaultNet("10.231.31.0/24", blueNet("10.232.31.0/24"))); err != nil {
		t.Fatal(err)
	}
	a := attach(t, n, netTask("dns1", "blue", "10.232.31.2/24", DefaultID, "10.231.31.2/24"))
	resolv, err := os.ReadFile(a.ResolvConfPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "nameserver 10.232.31.1\noptions ndots:0\n"; string(resolv) != want {
		t.Errorf("resolv.conf = %q, want %q (the primary network's gateway)", resolv, want)
	}
}

// nodeLeftovers lists the bridges, rules and namespaces of n still on the
// host, for bridges named in bridges.
func nodeLeftovers(tb testing.TB, n *Network, bridges ...string) []string {
	tb.Helper()
	var out []string
	for _, b := range bridges {
		if _, err := netlink.LinkByName(b); err == nil {
			out = append(out, "bridge "+b)
		}
		for _, c := range [][2]string{{"filter", chainForward}, {"filter", chainIsolate}, {"filter", chainIsolateDst}, {"nat", chainPostrouting}} {
			if k := countTagged(tb, n, c[0], c[1], netComment(b)); k > 0 {
				out = append(out, fmt.Sprintf("%d rules of %s in %s", k, b, c[1]))
			}
		}
	}
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "shoal-"+n.nodeTag) {
			out = append(out, "namespace "+e.Name())
		}
	}
	return out
}

func TestSetNetworksRemovesANetwork(t *testing.T) {
	n := newTestNetworkAt(t, t.TempDir(), fmt.Sprintf("shtest%d", bridgeSeq.Add(1)))
	blue := blueNet("10.232.32.0/24")
	if err := n.SetNetworks(defaultNet("10.231.32.0/24", blue)); err != nil {
		t.Fatal(err)
	}
	blueBridge := n.bridgeFor("blue")
	if blueBridge == n.bridge || len(blueBridge) > 15 {
		t.Fatalf("blue's bridge is named %q", blueBridge)
	}
	b1 := attach(t, n, netTask("b1", "blue", "10.232.32.2/24"))

	// Dropped while b1 is on it: kept until b1 goes, closed to new tasks.
	if err := n.SetNetworks(defaultNet("10.231.32.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(blueBridge); err != nil {
		t.Errorf("blue's bridge is gone while b1 is on it: %v", err)
	}
	if _, ok := n.Gateway("blue"); ok {
		t.Error("Gateway(blue) is ok after SetNetworks dropped blue")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := n.Attach(ctx, netTask("b2", "blue", "10.232.32.3/24")); !errors.Is(err, ErrUnknownNetwork) || !strings.Contains(err.Error(), "blue") {
		t.Errorf("Attach to a dropped network: %v, want ErrUnknownNetwork naming blue", err)
	}
	if err := n.Detach(t.Context(), "b1"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n, "b1", b1)
	if left := nodeLeftovers(t, n, blueBridge); len(left) > 0 {
		t.Errorf("after the last task on a dropped network left: %v", left)
	}

	// Unused, it goes at once; a task waiting for a network attaches as
	// soon as SetNetworks makes it.
	if err := n.SetNetworks(defaultNet("10.231.32.0/24", blue)); err != nil {
		t.Fatal(err)
	}
	if err := n.SetNetworks(defaultNet("10.231.32.0/24")); err != nil {
		t.Fatal(err)
	}
	if left := nodeLeftovers(t, n, blueBridge); len(left) > 0 {
		t.Errorf("after dropping an unused network left: %v", left)
	}
	done := make(chan error, 1)
	go func() {
		_, err := n.Attach(t.Context(), netTask("g1", DefaultID, "10.231.32.2/24", "green", "10.233.32.2/24"))
		done <- err
	}()
	green := Def{ID: "green", Subnet: netip.MustParsePrefix("10.233.0.0/16"), Slice: netip.MustParsePrefix("10.233.32.0/24")}
	if err := n.SetNetworks(defaultNet("10.231.32.0/24", green)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Attach waiting for network green: %v", err)
	}

	if err := n.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if left := nodeLeftovers(t, n, n.bridge, blueBridge, n.bridgeFor("green")); len(left) > 0 {
		t.Errorf("after Destroy left: %v", left)
	}
}

// TestOldRecordsMigrate: an agent from before networks recorded its subnet
// as {pool, subnet} and each task as one veth and address. The new agent
// takes them as the default network, keeps a task that still runs, prunes
// one that does not and destroys everything.
func TestOldRecordsMigrate(t *testing.T) {
	dir := t.TempDir()
	bridge := fmt.Sprintf("shtest%d", bridgeSeq.Add(1))
	n := newTestNetworkAt(t, dir, bridge)
	if err := n.SetNetworks(defaultNet("10.231.33.0/24")); err != nil {
		t.Fatal(err)
	}
	keep := attach(t, n, task("old1", "10.231.33.2/24"))
	gone := attach(t, n, task("old2", "10.231.33.3/24"))
	// Write the records as the old agent did.
	if err := jsonfile.Write(filepath.Join(n.dir, "node.json"), map[string]any{"pool": testPool, "subnet": "10.231.33.0/24"}, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*taskRecord{n.tasks["old1"], n.tasks["old2"]} {
		old := map[string]any{"task_id": r.TaskID, "netns": r.NetNS, "veth": r.Links[0].Veth, "address": r.Links[0].Address, "complete": true}
		if err := jsonfile.Write(filepath.Join(n.taskDir(r.TaskID), "record.json"), old, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.tasks = map[string]*taskRecord{} // n2 owns them now

	n2, err := New(Config{DataDir: dir, Bridge: bridge, DNS: []string{"192.0.2.53"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []netRecord{{ID: DefaultID, Subnet: testPool, Slice: "10.231.33.0/24", Bridge: bridge}}
	if fmt.Sprint(n2.node.Networks) != fmt.Sprint(want) {
		t.Errorf("migrated networks = %+v, want %+v", n2.node.Networks, want)
	}
	if gw, ok := n2.Gateway(DefaultID); !ok || gw.String() != "10.231.33.1" {
		t.Errorf("Gateway(default) after migration = %v, %v", gw, ok)
	}
	if err := n2.Prune(t.Context(), map[string]bool{"old1": true}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n2, "old2", gone)
	again, err := n2.Attach(t.Context(), task("old1", "10.231.33.2/24"))
	if err != nil || again != keep {
		t.Errorf("Attach of the kept old task = %+v, %v; want %+v", again, err, keep)
	}
	if err := n2.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if left := nodeLeftovers(t, n2, bridge); len(left) > 0 {
		t.Errorf("after Destroy of the migrated node left: %v", left)
	}
}

// TestCrossNodeNetworks: two nodes (as in TestCrossNode), each with a slice
// of the default network and of blue. A task reaches another node's task
// on a network they share, and not one on another network.
func TestCrossNodeNetworks(t *testing.T) {
	hostA, hostB := makeHosts(t)
	a := startHost(t, hostA, hostConfig{
		DataDir: t.TempDir(), Bridge: "shoal0",
		Networks: []hostNet{{DefaultID, testPool, "10.231.40.0/24"}, {"blue", "10.232.0.0/16", "10.232.40.0/24"}},
		Peers:    []hostPeer{{"10.231.41.0/24", "198.51.100.2"}, {"10.232.41.0/24", "198.51.100.2"}},
		Tasks: []hostTask{
			{"xa", [][2]string{{DefaultID, "10.231.40.2/24"}}},
			{"xab", [][2]string{{"blue", "10.232.40.2/24"}}},
			{"xboth", [][2]string{{DefaultID, "10.231.40.3/24"}, {"blue", "10.232.40.3/24"}}},
		},
	})
	b := startHost(t, hostB, hostConfig{
		DataDir: t.TempDir(), Bridge: "shoal0",
		Networks: []hostNet{{DefaultID, testPool, "10.231.41.0/24"}, {"blue", "10.232.0.0/16", "10.232.41.0/24"}},
		Peers:    []hostPeer{{"10.231.40.0/24", "198.51.100.1"}, {"10.232.40.0/24", "198.51.100.1"}},
		Tasks: []hostTask{
			{"xb", [][2]string{{DefaultID, "10.231.41.2/24"}}},
			{"xbb", [][2]string{{"blue", "10.232.41.2/24"}}},
		},
	})
	expectReach(t, "default A → default B", a["xa"], "10.231.41.2:7000", "10.231.40.2")
	expectReach(t, "blue A → blue B", a["xab"], "10.232.41.2:7000", "10.232.40.2")
	expectReach(t, "blue B → blue A", b["xbb"], "10.232.40.2:7000", "10.232.41.2")
	expectReach(t, "both A → blue B", a["xboth"], "10.232.41.2:7000", "10.232.40.3")
	expectReach(t, "both A → default B", a["xboth"], "10.231.41.2:7000", "10.231.40.3")
	expectBlocked(t, "default A → blue B", a["xa"], "10.232.41.2:7000")
	expectBlocked(t, "blue A → default B", a["xab"], "10.231.41.2:7000")
	expectBlocked(t, "blue B → default A", b["xbb"], "10.231.40.2:7000")
	expectBlocked(t, "default B → blue A", b["xb"], "10.232.40.2:7000")
}
