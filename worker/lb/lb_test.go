package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"shoal/internal/testutil"
)

var vip = netip.MustParseAddr("10.201.0.10")

func vipAddr(port int) string { return fmt.Sprintf("%s:%d", vip, port) }

// apply applies services; one without Sources gets the one the agent would
// give the topology's tasks, all on one network: its Backends.
func apply(tb testing.TB, l *LB, services ...Service) {
	tb.Helper()
	for i, s := range services {
		if s.Sources == nil {
			services[i].Sources = []Source{{From: netip.MustParsePrefix(gateway + "/24").Masked(), Backends: s.Backends}}
		}
	}
	if err := l.Apply(services); err != nil {
		tb.Fatal(err)
	}
}

// seen counts which task answers each of n new connections from path.
func seen(tb testing.TB, path string, n int) map[string]int {
	tb.Helper()
	count := make(map[string]int)
	for range n {
		name, err := askOnce(path, vipAddr(tcpPort))
		if err != nil {
			tb.Fatalf("connect to the VIP: %v", err)
		}
		count[name]++
	}
	return count
}

func TestBalancesOverReadyBackends(t *testing.T) {
	topo := newTopology(t, "t1", "t2", "t3", "client")
	l := topo.newLB(t)
	client := topo.tasks["client"].ns
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("t1", "t2", "t3")})

	got := seen(t, client, 300)
	for _, name := range []string{"t1", "t2", "t3"} {
		if got[name] == 0 {
			t.Errorf("300 connections never reached %s: %v", name, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("answers from %v, want t1, t2 and t3 only", got)
	}

	// A connection made before t3 stops being ready keeps it (draining).
	var kept *conn
	for kept == nil {
		c, err := dial(client, vipAddr(tcpPort))
		if err != nil {
			t.Fatal(err)
		}
		if name, _, err := c.ask(); err != nil {
			t.Fatal(err)
		} else if name != "t3" {
			c.Close()
			continue
		}
		kept = c
	}
	defer kept.Close()

	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("t1", "t2")})
	got = seen(t, client, 100)
	if got["t3"] != 0 || got["t1"] == 0 || got["t2"] == 0 {
		t.Errorf("after removing t3, 100 connections went to %v; want t1 and t2 only", got)
	}
	if name, _, err := kept.ask(); err != nil || name != "t3" {
		t.Errorf("connection made before t3 was removed: answer %q, %v; want t3 still", name, err)
	}
}

func TestNoBackendRejects(t *testing.T) {
	topo := newTopology(t, "t1", "client")
	l := topo.newLB(t)
	apply(t, l, Service{ID: "web", VIP: vip})

	for _, from := range []string{topo.tasks["client"].ns, topo.host} {
		_, err := dial(from, vipAddr(tcpPort))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("TCP from %s to a VIP without backends: %v; want connection refused (timeout: %v)", from, err, isTimeout(err))
		}
		u, err := dialUDP(from, vipAddr(udpPort))
		if err != nil {
			t.Fatal(err)
		}
		_, err = askUDP(u)
		u.Close()
		// The host's own datagram is rejected in its output hook: the
		// write itself fails.
		if !errors.Is(err, syscall.ECONNREFUSED) && !(from == topo.host && errors.Is(err, syscall.EPERM)) {
			t.Errorf("UDP from %s to a VIP without backends: %v; want connection refused (timeout: %v)", from, err, isTimeout(err))
		}
	}

	// A backend becoming ready opens the VIP.
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("t1")})
	if name, err := askOnce(topo.tasks["client"].ns, vipAddr(tcpPort)); err != nil || name != "t1" {
		t.Errorf("after t1 became ready: answer %q, %v; want t1", name, err)
	}
}

func TestHairpinToItself(t *testing.T) {
	topo := newTopology(t, "t1", "t2")
	l := topo.newLB(t)
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("t1")})

	c, err := dial(topo.tasks["t1"].ns, vipAddr(tcpPort))
	if err != nil {
		t.Fatalf("t1 → its own service's VIP: %v", err)
	}
	defer c.Close()
	name, from, err := c.ask()
	if err != nil || name != "t1" {
		t.Fatalf("t1 → VIP: answer %q, %v; want t1", name, err)
	}
	if from != gateway {
		t.Errorf("t1 saw its own connection come from %s, want the gateway %s (masqueraded)", from, gateway)
	}
	// Another task's connection keeps its source address.
	c2, err := dial(topo.tasks["t2"].ns, vipAddr(tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if name, from, err := c2.ask(); err != nil || name != "t1" || from != topo.tasks["t2"].addr.String() {
		t.Errorf("t2 → VIP: answer %q from %q, %v; want t1 seeing t2's address", name, from, err)
	}
}

func TestHostReachesVIP(t *testing.T) {
	topo := newTopology(t, "t1", "t2")
	l := topo.newLB(t)
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("t1", "t2")})
	name, err := askOnce(topo.host, vipAddr(tcpPort))
	if err != nil || (name != "t1" && name != "t2") {
		t.Errorf("host → VIP: answer %q, %v; want t1 or t2", name, err)
	}
}

func TestDestroyRemovesTable(t *testing.T) {
	topo := newTopology(t)
	l := topo.newLB(t)
	apply(t, l, Service{ID: "web", VIP: vip, Backends: []netip.Addr{netip.MustParseAddr("10.77.0.9")}})
	if !strings.Contains(listTables(t, l), "shoal-test") {
		t.Fatal("table missing after New and Apply")
	}
	if err := l.Destroy(); err != nil {
		t.Fatal(err)
	}
	if out := listTables(t, l); strings.Contains(out, "shoal-test") {
		t.Errorf("after Destroy nft lists:\n%s", out)
	}
	if err := l.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	// Apply after Destroy makes the table again.
	apply(t, l, Service{ID: "web", VIP: vip})
	if !strings.Contains(listTables(t, l), "shoal-test") {
		t.Error("Apply after Destroy did not make the table")
	}
}

func listTables(tb testing.TB, l *LB) string {
	tb.Helper()
	out, err := l.run([]string{"list", "tables"}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func listTable(tb testing.TB, l *LB) string {
	tb.Helper()
	out, err := l.run([]string{"list", "table", "ip", l.table}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestApplySameSetIsNoop(t *testing.T) {
	topo := newTopology(t)
	l := topo.newLB(t)
	a, b := netip.MustParseAddr("10.77.0.8"), netip.MustParseAddr("10.77.0.9")
	apply(t, l, Service{ID: "web", VIP: vip, Backends: []netip.Addr{a, b}}, Service{ID: "db", VIP: netip.MustParseAddr("10.201.0.11")})
	before, runs := listTable(t, l), l.transactions
	apply(t, l, Service{ID: "db", VIP: netip.MustParseAddr("10.201.0.11")}, Service{ID: "web", VIP: vip, Backends: []netip.Addr{b, a, b}})
	if l.transactions != runs {
		t.Errorf("Apply of the same set ran nft %d times", l.transactions-runs)
	}
	if after := listTable(t, l); after != before {
		t.Errorf("table changed:\n%s\nto\n%s", before, after)
	}
}

func TestNewKeepsTableUntilApply(t *testing.T) {
	topo := newTopology(t, "t1", "client")
	l := topo.newLB(t)
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("t1")})
	// An agent restart: the VIP keeps answering until the new LB's first
	// Apply, which replaces the table whole.
	l2 := topo.newLB(t)
	if name, err := askOnce(topo.tasks["client"].ns, vipAddr(tcpPort)); err != nil || name != "t1" {
		t.Errorf("after a second New: answer %q, %v; want t1", name, err)
	}
	apply(t, l2, Service{ID: "other", VIP: netip.MustParseAddr("10.201.0.11")})
	if out := listTable(t, l2); strings.Contains(out, vip.String()) {
		t.Errorf("the first Apply kept the old table's VIP:\n%s", out)
	}
}

func TestUDPFlowToRemovedBackendIsForgotten(t *testing.T) {
	topo := newTopology(t, "t1", "t2", "client")
	l := topo.newLB(t)
	apply(t, l, Service{ID: "dns", VIP: vip, Backends: topo.addrs("t1", "t2")})

	u, err := dialUDP(topo.tasks["client"].ns, vipAddr(udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	first, err := askUDP(u)
	if err != nil {
		t.Fatalf("UDP to the VIP: %v", err)
	}
	// The flow sticks to its backend while that one is ready …
	for range 5 {
		if again, err := askUDP(u); err != nil || again != first {
			t.Fatalf("UDP flow moved from %s to %q (%v) with no change", first, again, err)
		}
	}
	// … and a TCP connection to it survives its removal.
	var tcp *conn
	for tcp == nil {
		c, err := dial(topo.tasks["client"].ns, vipAddr(tcpPort))
		if err != nil {
			t.Fatal(err)
		}
		if name, _, err := c.ask(); err == nil && name == first {
			tcp = c
		} else {
			c.Close()
		}
	}
	defer tcp.Close()

	other := "t1"
	if first == "t1" {
		other = "t2"
	}
	apply(t, l, Service{ID: "dns", VIP: vip, Backends: topo.addrs(other)})
	if flows := udpFlowsTo(t, l, topo.tasks[first].addr); flows != 0 {
		t.Errorf("%d UDP conntrack entries to removed backend %s left", flows, first)
	}
	if got, err := askUDP(u); err != nil || got != other {
		t.Errorf("UDP flow after %s was removed: answer %q, %v; want %s", first, got, err, other)
	}
	if name, _, err := tcp.ask(); err != nil || name != first {
		t.Errorf("TCP connection to removed %s: answer %q, %v; want it kept", first, name, err)
	}
}

// udpFlowsTo counts UDP conntrack entries DNATed to backend.
func udpFlowsTo(tb testing.TB, l *LB, backend netip.Addr) int {
	tb.Helper()
	n := 0
	err := l.withHandle(func(h *netlink.Handle) error {
		flows, err := h.ConntrackTableList(netlink.ConntrackTable, syscall.AF_INET)
		for _, f := range flows {
			if a, ok := addrOf(f.Reverse.SrcIP); ok && a == backend && f.Forward.Protocol == syscall.IPPROTO_UDP {
				n++
			}
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestPingVIP(t *testing.T) {
	topo := newTopology(t, "t1", "client")
	testutil.RequireRoot(t, "ping", "ip")
	l := topo.newLB(t)
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("t1")})
	// ICMP echo is DNATed like any protocol: the backend answers for the VIP.
	out, err := exec.Command("ip", "netns", "exec", filepath.Base(topo.tasks["client"].ns), "ping", "-c", "1", "-W", "3", vip.String()).CombinedOutput()
	if err != nil {
		t.Errorf("ping %s from a task: %v\n%s", vip, err, out)
	}
}
