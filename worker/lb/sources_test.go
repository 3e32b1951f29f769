package lb

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestValidateRefusesBadSources(t *testing.T) {
	vip := netip.MustParseAddr("10.201.0.1")
	for _, tc := range []struct {
		name    string
		sources []Source
		mention string
	}{
		{"no prefix", []Source{{}}, "Sources[0].From"},
		{"IPv6 prefix", []Source{{From: prefix("fd00::/64")}}, "Sources[0].From"},
		{"same twice", []Source{{From: prefix("10.1.0.0/24")}, {From: prefix("10.1.0.0/24")}}, "overlap"},
		{"nested", []Source{{From: prefix("10.1.2.0/24")}, {From: prefix("10.3.0.0/16")}, {From: prefix("10.0.0.0/8")}}, "10.0.0.0/8 and 10.1.2.0/24 overlap"},
		{"IPv6 backend", []Source{{From: prefix("10.1.0.0/24"), Backends: addrs("fd00::2")}}, "Sources[0] (10.1.0.0/24): backend"},
		{"VIP as backend", []Source{{From: prefix("10.1.0.0/24"), Backends: []netip.Addr{vip}}}, "VIP itself"},
	} {
		_, err := validate([]Service{{ID: "web", VIP: vip, Sources: tc.sources}})
		if !errors.Is(err, ErrInvalidService) || !strings.Contains(err.Error(), tc.mention) || !strings.Contains(err.Error(), `"web"`) {
			t.Errorf("%s: %v; want ErrInvalidService naming the service and %q", tc.name, err, tc.mention)
		}
	}
	got, err := validate([]Service{{ID: "web", VIP: vip, Sources: []Source{
		{From: prefix("10.2.0.7/24"), Backends: addrs("10.2.0.3", "10.2.0.2", "10.2.0.3")},
		{From: netip.PrefixFrom(netip.MustParseAddr("::ffff:10.1.0.0"), 120)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	s := got["web"]
	if len(s.sources) != 2 || s.sources[0].from != prefix("10.1.0.0/24") || s.sources[1].from != prefix("10.2.0.0/24") ||
		!slices.Equal(s.sources[1].backends, addrs("10.2.0.2", "10.2.0.3")) {
		t.Errorf("normalised to %+v; want sources sorted, prefixes masked and IPv4, backends sorted and unique", s.sources)
	}
}

// webWithSources is a service with a catch-all backend and three client
// prefixes: one with two backends, one without (rejected), one with one.
func webWithSources() Service {
	return Service{ID: "web", VIP: netip.MustParseAddr("10.201.0.1"), Backends: addrs("10.0.0.9"), Sources: []Source{
		{From: prefix("10.1.0.0/24"), Backends: addrs("10.1.0.3", "10.1.0.2")},
		{From: prefix("10.2.0.0/24")},
		{From: prefix("10.3.0.0/24"), Backends: addrs("10.3.0.2")},
	}}
}

func TestFullScriptSources(t *testing.T) {
	want, err := validate([]Service{webWithSources(), {ID: "db", VIP: netip.MustParseAddr("10.201.0.2"), Sources: []Source{{From: prefix("10.1.0.0/24"), Backends: addrs("10.1.0.5")}}}})
	if err != nil {
		t.Fatal(err)
	}
	got := fullScript("t", want)
	body, ok := strings.CutPrefix(got, "add table ip t\ndelete table ip t\ntable ip t {\n"+baseChains)
	if !ok {
		t.Fatalf("script does not start with the table's fixed part:\n%s", got)
	}
	web, db := chainName("web"), chainName("db")
	wantBody := strings.Join([]string{
		"\tchain " + db + "_0a010000_24 {\n\t\tdnat to 10.1.0.5\n\t}",
		"\tchain " + web + " {\n\t\tdnat to 10.0.0.9\n\t}",
		"\tchain " + web + "_0a010000_24 {\n\t\tdnat to numgen random mod 2 map { 0 : 10.1.0.2, 1 : 10.1.0.3 }\n\t}",
		"\tchain " + web + "_0a030000_24 {\n\t\tdnat to 10.3.0.2\n\t}",
		"}",
		// db has no catch-all backend: the node's own clients are refused.
		"add element ip t vips { 10.201.0.1 : jump " + web + " }",
		// 10.2.0.0/24 has no element: its clients are rejected (vipaddrs).
		"add element ip t sourced { 10.1.0.0/24 . 10.201.0.2 : jump " + db + "_0a010000_24, 10.1.0.0/24 . 10.201.0.1 : jump " + web + "_0a010000_24, " +
			"10.3.0.0/24 . 10.201.0.1 : jump " + web + "_0a030000_24 }",
		"add element ip t closed { 10.201.0.2 }",
		"add element ip t vipaddrs { 10.201.0.2, 10.201.0.1 }",
		"add element ip t hairpin { 10.0.0.9 . 10.0.0.9, 10.1.0.2 . 10.1.0.2, 10.1.0.3 . 10.1.0.3, 10.1.0.5 . 10.1.0.5, 10.3.0.2 . 10.3.0.2 }",
		"",
	}, "\n")
	if body != wantBody {
		t.Errorf("full script after the fixed part:\n%s\nwant:\n%s", body, wantBody)
	}
}

func TestUpdateScriptSources(t *testing.T) {
	old, err := validate([]Service{webWithSources()})
	if err != nil {
		t.Fatal(err)
	}
	next := webWithSources()
	next.Sources = []Source{
		{From: prefix("10.1.0.0/24"), Backends: addrs("10.1.0.2", "10.1.0.4")}, // one backend replaced
		{From: prefix("10.2.0.0/24"), Backends: addrs("10.2.0.2")},             // opened
		{From: prefix("10.4.0.0/24")},                                          // new, closed
		// 10.3.0.0/24: the service left that network.
	}
	want, err := validate([]Service{next})
	if err != nil {
		t.Fatal(err)
	}
	c := chainName("web")
	wantScript := strings.Join([]string{
		"delete element ip t sourced { 10.3.0.0/24 . 10.201.0.1 }",
		"delete element ip t hairpin { 10.1.0.3 . 10.1.0.3, 10.3.0.2 . 10.3.0.2 }",
		"delete chain ip t " + c + "_0a030000_24",
		"flush chain ip t " + c + "_0a010000_24",
		"add rule ip t " + c + "_0a010000_24 dnat to numgen random mod 2 map { 0 : 10.1.0.2, 1 : 10.1.0.4 }",
		"add chain ip t " + c + "_0a020000_24",
		"add rule ip t " + c + "_0a020000_24 dnat to 10.2.0.2",
		"add element ip t sourced { 10.2.0.0/24 . 10.201.0.1 : jump " + c + "_0a020000_24 }",
		"add element ip t hairpin { 10.1.0.4 . 10.1.0.4, 10.2.0.2 . 10.2.0.2 }",
		"",
	}, "\n")
	if got := updateScript("t", old, want); got != wantScript {
		t.Errorf("update script:\n%s\nwant:\n%s", got, wantScript)
	}

	// Removing the service removes all it had.
	wantScript = strings.Join([]string{
		"delete element ip t vips { 10.201.0.1 }",
		"delete element ip t sourced { 10.1.0.0/24 . 10.201.0.1, 10.3.0.0/24 . 10.201.0.1 }",
		"delete element ip t vipaddrs { 10.201.0.1 }",
		"delete element ip t hairpin { 10.0.0.9 . 10.0.0.9, 10.1.0.2 . 10.1.0.2, 10.1.0.3 . 10.1.0.3, 10.3.0.2 . 10.3.0.2 }",
		"delete chain ip t " + c,
		"delete chain ip t " + c + "_0a010000_24",
		"delete chain ip t " + c + "_0a030000_24",
		"",
	}, "\n")
	if got := updateScript("t", old, nil); got != wantScript {
		t.Errorf("removal script:\n%s\nwant:\n%s", got, wantScript)
	}
}

func TestRemovedBackendsOfSources(t *testing.T) {
	old, _ := validate([]Service{webWithSources()})
	next := webWithSources()
	// 10.1.0.3 leaves; 10.3.0.2 moves from its source to the catch-all,
	// so flows to it still lead somewhere right.
	next.Backends = addrs("10.0.0.9", "10.3.0.2")
	next.Sources = next.Sources[:2]
	next.Sources[0].Backends = addrs("10.1.0.2")
	want, _ := validate([]Service{next})
	got := removedBackends(old, want)
	if wantGone := []flowKey{{netip.MustParseAddr("10.201.0.1"), netip.MustParseAddr("10.1.0.3")}}; !slices.Equal(got, wantGone) {
		t.Errorf("removed = %v, want %v", got, wantGone)
	}
}

// TestSourcesPickTheClientsNetwork: a client on a network gets the
// service's backend on that network, a client on a network whose Source
// has no backend is refused at once, and the node itself gets Backends.
func TestSourcesPickTheClientsNetwork(t *testing.T) {
	// The bridge's /24 stands for several networks: each client's /32 is
	// one network, which is all the rules look at.
	topo := newTopology(t, "x", "y", "z", "ca", "cb")
	l := topo.newLB(t)
	ca, cb := topo.tasks["ca"], topo.tasks["cb"]
	netA, netB := netip.PrefixFrom(ca.addr, 32), netip.PrefixFrom(cb.addr, 32)
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("z"), Sources: []Source{
		{From: netA, Backends: topo.addrs("x")},
		{From: netB},
	}})

	for range 20 {
		if name, err := askOnce(ca.ns, vipAddr(tcpPort)); err != nil || name != "x" {
			t.Fatalf("client on network A → VIP: answer %q, %v; want x, its backend on A", name, err)
		}
	}
	if name, err := askOnce(topo.host, vipAddr(tcpPort)); err != nil || name != "z" {
		t.Errorf("node → VIP: answer %q, %v; want z, from Backends", name, err)
	}
	if _, err := dial(cb.ns, vipAddr(tcpPort)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP from network B, where the service has no backend: %v; want connection refused (timeout: %v)", err, isTimeout(err))
	}
	u, err := dialUDP(cb.ns, vipAddr(udpPort))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := askUDP(u); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("UDP from network B: %v; want connection refused (timeout: %v)", err, isTimeout(err))
	}
	u.Close()

	// B gains a backend, A's changes: one incremental transaction.
	runs, rebuilds := l.transactions, l.rebuilds
	apply(t, l, Service{ID: "web", VIP: vip, Backends: topo.addrs("z"), Sources: []Source{
		{From: netA, Backends: topo.addrs("y")},
		{From: netB, Backends: topo.addrs("x")},
	}})
	if l.transactions != runs+1 || l.rebuilds != rebuilds {
		t.Errorf("the update ran nft %d times with %d rebuilds; want one incremental transaction", l.transactions-runs, l.rebuilds-rebuilds)
	}
	if name, err := askOnce(ca.ns, vipAddr(tcpPort)); err != nil || name != "y" {
		t.Errorf("client on A after its backend changed: answer %q, %v; want y", name, err)
	}
	if name, err := askOnce(cb.ns, vipAddr(tcpPort)); err != nil || name != "x" {
		t.Errorf("client on B after it gained a backend: answer %q, %v; want x", name, err)
	}

	// A task reaching itself through the VIP on its network is
	// masqueraded like any hairpin.
	apply(t, l, Service{ID: "web", VIP: vip, Sources: []Source{{From: netA, Backends: []netip.Addr{ca.addr}}}})
	if name, err := askOnce(ca.ns, vipAddr(tcpPort)); err != nil || name != "ca" {
		t.Errorf("ca → VIP with itself as A's backend: answer %q, %v; want ca", name, err)
	}
	// With the Sources gone, B's client falls to Backends, here none.
	if _, err := dial(cb.ns, vipAddr(tcpPort)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP from B with no Source and no Backends: %v; want connection refused", err)
	}
}

// TestIncrementalSourcesMatchRebuild is TestIncrementalMatchesRebuild with
// sources: interval maps are where nft's incremental updates are most
// likely to go wrong.
func TestIncrementalSourcesMatchRebuild(t *testing.T) {
	networks := []netip.Prefix{prefix("10.1.0.0/24"), prefix("10.2.0.0/24"), prefix("10.3.0.0/16"), prefix("10.200.5.7/32")}
	matchesRebuild(t, 3, func(rng *rand.Rand) []Service {
		var services []Service
		vips := rng.Perm(12)
		for i := range 6 {
			if rng.IntN(4) == 0 {
				continue
			}
			s := Service{ID: fmt.Sprintf("svc%d", i), VIP: netip.AddrFrom4([4]byte{10, 201, 0, byte(vips[i] + 1)})}
			for b := range 3 {
				if rng.IntN(2) == 0 {
					s.Backends = append(s.Backends, netip.AddrFrom4([4]byte{10, 200, byte(b), 2}))
				}
			}
			for n, p := range networks {
				if rng.IntN(3) == 0 {
					continue
				}
				src := Source{From: p}
				for b := range 3 {
					if rng.IntN(2) == 0 {
						src.Backends = append(src.Backends, netip.AddrFrom4([4]byte{10, 210, byte(n), byte(b + 2)}))
					}
				}
				s.Sources = append(s.Sources, src)
			}
			services = append(services, s)
		}
		return services
	})
}
