package lb

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func TestValidateRefusesBadServices(t *testing.T) {
	ok := Service{ID: "a", VIP: netip.MustParseAddr("10.201.0.1")}
	for _, tc := range []struct {
		name     string
		services []Service
		mention  string
	}{
		{"empty ID", []Service{{VIP: ok.VIP}}, "empty ID"},
		{"twice", []Service{ok, ok}, `"a"`},
		{"no VIP", []Service{{ID: "a"}}, "VIP"},
		{"IPv6 VIP", []Service{{ID: "a", VIP: netip.MustParseAddr("fd00::1")}}, "VIP"},
		{"shared VIP", []Service{ok, {ID: "b", VIP: ok.VIP}}, "same VIP"},
		{"IPv6 backend", []Service{{ID: "a", VIP: ok.VIP, Backends: addrs("fd00::2")}}, "backend"},
		{"zero backend", []Service{{ID: "a", VIP: ok.VIP, Backends: []netip.Addr{{}}}}, "backend"},
		{"VIP as backend", []Service{{ID: "a", VIP: ok.VIP, Backends: []netip.Addr{ok.VIP}}}, "VIP itself"},
	} {
		_, err := validate(tc.services)
		if !errors.Is(err, ErrInvalidService) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: %v; want ErrInvalidService mentioning %q", tc.name, err, tc.mention)
		}
	}
	got, err := validate([]Service{{ID: "a", VIP: netip.MustParseAddr("::ffff:10.201.0.1"), Backends: addrs("10.0.0.3", "10.0.0.2", "10.0.0.3")}})
	if err != nil {
		t.Fatal(err)
	}
	if s := got["a"]; s.vip != ok.VIP || !slices.Equal(s.backends, addrs("10.0.0.2", "10.0.0.3")) {
		t.Errorf("normalised to %+v; want the IPv4 VIP and sorted unique backends", s)
	}
}

func TestUpdateScriptWritesOnlyChanges(t *testing.T) {
	old, _ := validate([]Service{
		{ID: "same", VIP: netip.MustParseAddr("10.201.0.1"), Backends: addrs("10.0.0.1", "10.0.0.2")},
		{ID: "shrinks", VIP: netip.MustParseAddr("10.201.0.2"), Backends: addrs("10.0.0.3", "10.0.0.4")},
		{ID: "empties", VIP: netip.MustParseAddr("10.201.0.3"), Backends: addrs("10.0.0.5")},
		{ID: "gone", VIP: netip.MustParseAddr("10.201.0.4")},
	})
	want, _ := validate([]Service{
		{ID: "same", VIP: netip.MustParseAddr("10.201.0.1"), Backends: addrs("10.0.0.2", "10.0.0.1")},
		{ID: "shrinks", VIP: netip.MustParseAddr("10.201.0.2"), Backends: addrs("10.0.0.3")},
		{ID: "empties", VIP: netip.MustParseAddr("10.201.0.3")},
		{ID: "new", VIP: netip.MustParseAddr("10.201.0.4"), Backends: addrs("10.0.0.6")},
	})
	got := updateScript("t", old, want)
	c := chainName
	wantScript := strings.Join([]string{
		"delete element ip t vips { 10.201.0.3 }",
		"delete element ip t closed { 10.201.0.4 }",
		// "gone" leaves and "new" takes its VIP: out and in again.
		"delete element ip t vipaddrs { 10.201.0.4 }",
		"delete element ip t hairpin { 10.0.0.4 . 10.0.0.4, 10.0.0.5 . 10.0.0.5 }",
		"delete chain ip t " + c("empties"),
		"add chain ip t " + c("new"),
		"add rule ip t " + c("new") + " dnat to 10.0.0.6",
		"flush chain ip t " + c("shrinks"),
		"add rule ip t " + c("shrinks") + " dnat to 10.0.0.3",
		"add element ip t vips { 10.201.0.4 : jump " + c("new") + " }",
		"add element ip t closed { 10.201.0.3 }",
		"add element ip t vipaddrs { 10.201.0.4 }",
		"add element ip t hairpin { 10.0.0.6 . 10.0.0.6 }",
		"",
	}, "\n")
	if got != wantScript {
		t.Errorf("update script:\n%s\nwant:\n%s", got, wantScript)
	}
	if s := updateScript("t", want, want); s != "" {
		t.Errorf("script for no change: %q, want empty", s)
	}
}

func TestDnatRule(t *testing.T) {
	if got := dnatRule(addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")); got != "dnat to numgen random mod 3 map { 0 : 10.0.0.1, 1 : 10.0.0.2, 2 : 10.0.0.3 }" {
		t.Errorf("three backends: %s", got)
	}
}

// TestIncrementalMatchesRebuild applies random sequences of changes and
// checks that the table each incremental Apply leaves equals a table built
// from scratch from the same set, and that nft accepted every increment.
func TestIncrementalMatchesRebuild(t *testing.T) {
	matchesRebuild(t, 1, func(rng *rand.Rand) []Service {
		var services []Service
		vips := rng.Perm(12)
		for i := range 8 {
			if rng.IntN(4) == 0 {
				continue
			}
			s := Service{ID: fmt.Sprintf("svc%d", i), VIP: netip.AddrFrom4([4]byte{10, 201, 0, byte(vips[i] + 1)})}
			for b := range 6 {
				if rng.IntN(2) == 0 {
					s.Backends = append(s.Backends, netip.AddrFrom4([4]byte{10, 200, byte(b), 2}))
				}
			}
			services = append(services, s)
		}
		return services
	})
}

// matchesRebuild applies 40 sets of services made by gen (from a random
// source seeded with seed) to an LB incrementally and to another one from
// scratch, and checks that both tables are the same after each, and that
// nft accepted every increment.
func matchesRebuild(t *testing.T, seed uint64, gen func(*rand.Rand) []Service) {
	topo := newTopology(t)
	l := topo.newLB(t)
	fresh, err := New(Config{Table: "shoal-fresh", NetNS: topo.host, Logger: l.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fresh.Destroy(); err != nil {
			t.Error(err)
		}
	})
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for step := range 40 {
		services := gen(rng)
		apply(t, l, services...)
		fresh.mu.Lock()
		fresh.synced = false
		fresh.mu.Unlock()
		apply(t, fresh, services...)
		if got, want := tableState(t, l), tableState(t, fresh); !slices.Equal(got, want) {
			t.Fatalf("step %d: incremental table\n%s\nfrom scratch\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if l.rebuilds != 1 {
		t.Errorf("%d whole-table rebuilds, want 1 (at New): an increment was refused", l.rebuilds)
	}
}

// tableState lists the table's objects as JSON, without handles or the
// table's name, set elements sorted, for comparison.
func tableState(tb testing.TB, l *LB) []string {
	tb.Helper()
	out, err := l.run([]string{"-j", "list", "table", "ip", l.table}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		tb.Fatal(err)
	}
	var state []string
	for _, item := range doc.Nftables {
		for kind, obj := range item {
			if kind == "metainfo" {
				continue
			}
			delete(obj, "handle")
			delete(obj, "table")
			if kind == "table" {
				obj = nil
			}
			if elems, ok := obj["elem"].([]any); ok {
				keys := make([]string, len(elems))
				for i, e := range elems {
					b, _ := json.Marshal(e)
					keys[i] = string(b)
				}
				slices.Sort(keys)
				obj["elem"] = keys
			}
			b, _ := json.Marshal(obj)
			state = append(state, kind+" "+string(b))
		}
	}
	slices.Sort(state)
	return state
}

func TestRemovedBackends(t *testing.T) {
	old, _ := validate([]Service{
		{ID: "a", VIP: netip.MustParseAddr("10.201.0.1"), Backends: addrs("10.0.0.1", "10.0.0.2")},
		{ID: "b", VIP: netip.MustParseAddr("10.201.0.2"), Backends: addrs("10.0.0.3")},
		{ID: "c", VIP: netip.MustParseAddr("10.201.0.3"), Backends: addrs("10.0.0.4")},
	})
	want, _ := validate([]Service{
		{ID: "a", VIP: netip.MustParseAddr("10.201.0.1"), Backends: addrs("10.0.0.2")},
		// c's VIP, moved to a new service with the same backend: the flow
		// still leads somewhere right.
		{ID: "d", VIP: netip.MustParseAddr("10.201.0.3"), Backends: addrs("10.0.0.4")},
	})
	got := removedBackends(old, want)
	slices.SortFunc(got, func(x, y flowKey) int { return x.backend.Compare(y.backend) })
	wantGone := []flowKey{
		{netip.MustParseAddr("10.201.0.1"), netip.MustParseAddr("10.0.0.1")},
		{netip.MustParseAddr("10.201.0.2"), netip.MustParseAddr("10.0.0.3")},
	}
	if !slices.Equal(got, wantGone) {
		t.Errorf("removed = %v, want %v", got, wantGone)
	}
}
