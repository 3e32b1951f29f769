package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The table's fixed part. Chains of services are jumped to from the verdict
// map vips (VIP → jump svc_…), which both nat hooks look up; a service with
// no backend has its VIP in the set closed instead, which the filter hooks
// reject. hairpin holds "backend . backend" for every backend, so that a
// task DNATed to itself is masqueraded (the kernel drops a packet from one
// of its own addresses as a martian). The output nat chain says -100: nft
// 1.0.6 refuses the dstnat keyword there.
const baseChains = `	set closed {
		type ipv4_addr
	}
	set hairpin {
		type ipv4_addr . ipv4_addr
	}
	map vips {
		type ipv4_addr : verdict
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr vmap @vips
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr vmap @vips
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ct status dnat ip saddr . ip daddr @hairpin masquerade
	}
	chain reject_in {
		type filter hook prerouting priority filter; policy accept;
		ip daddr @closed meta l4proto tcp reject with tcp reset
		ip daddr @closed reject
	}
	chain reject_out {
		type filter hook output priority filter; policy accept;
		ip daddr @closed meta l4proto tcp reject with tcp reset
		ip daddr @closed reject
	}
`

// fullScript replaces the table, whatever it held, with one holding
// services: "add" then "delete" makes the delete valid when there is no
// table, and nft runs the whole script as one transaction.
func fullScript(table string, services map[string]service) string {
	var b strings.Builder
	fmt.Fprintf(&b, "add table ip %s\ndelete table ip %s\ntable ip %s {\n%s", table, table, table, baseChains)
	var vips, closed []string
	hairpin := make(map[netip.Addr]bool)
	for _, s := range sorted(services) {
		if len(s.backends) == 0 {
			closed = append(closed, s.vip.String())
			continue
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\t%s\n\t}\n", s.chain, dnatRule(s.backends))
		vips = append(vips, s.vip.String()+" : jump "+s.chain)
		for _, a := range s.backends {
			hairpin[a] = true
		}
	}
	b.WriteString("}\n")
	addElements(&b, table, "vips", vips)
	addElements(&b, table, "closed", closed)
	addElements(&b, table, "hairpin", hairpinElements(hairpin))
	return b.String()
}

// updateScript turns the table from holding old into holding want, writing
// only what differs, or returns "" when nothing does. Deletions come first
// so that a VIP moving from one service to another is free when added.
func updateScript(table string, old, want map[string]service) string {
	if unchanged(old, want) {
		return ""
	}
	var delVips, delClosed, delChains, addVips, addClosed []string
	var rules strings.Builder
	for _, o := range sorted(old) {
		n, kept := want[o.id]
		if kept && n.equal(o) {
			continue
		}
		if len(o.backends) == 0 {
			delClosed = append(delClosed, o.vip.String())
		} else if !kept || len(n.backends) == 0 || n.vip != o.vip {
			delVips = append(delVips, o.vip.String())
		}
		if len(o.backends) > 0 && (!kept || len(n.backends) == 0) {
			delChains = append(delChains, o.chain)
		}
	}
	for _, n := range sorted(want) {
		o, had := old[n.id]
		if had && n.equal(o) {
			continue
		}
		if len(n.backends) == 0 {
			addClosed = append(addClosed, n.vip.String())
			continue
		}
		hadChain := had && len(o.backends) > 0
		if hadChain {
			fmt.Fprintf(&rules, "flush chain ip %s %s\n", table, n.chain)
		} else {
			fmt.Fprintf(&rules, "add chain ip %s %s\n", table, n.chain)
		}
		fmt.Fprintf(&rules, "add rule ip %s %s %s\n", table, n.chain, dnatRule(n.backends))
		if !hadChain || n.vip != o.vip {
			addVips = append(addVips, n.vip.String()+" : jump "+n.chain)
		}
	}
	oldHairpin, newHairpin := backendSet(old), backendSet(want)
	delHairpin, addHairpin := make(map[netip.Addr]bool), make(map[netip.Addr]bool)
	for a := range oldHairpin {
		if !newHairpin[a] {
			delHairpin[a] = true
		}
	}
	for a := range newHairpin {
		if !oldHairpin[a] {
			addHairpin[a] = true
		}
	}

	var b strings.Builder
	deleteElements(&b, table, "vips", delVips)
	deleteElements(&b, table, "closed", delClosed)
	deleteElements(&b, table, "hairpin", hairpinElements(delHairpin))
	for _, c := range delChains {
		fmt.Fprintf(&b, "delete chain ip %s %s\n", table, c)
	}
	b.WriteString(rules.String())
	addElements(&b, table, "vips", addVips)
	addElements(&b, table, "closed", addClosed)
	addElements(&b, table, "hairpin", hairpinElements(addHairpin))
	return b.String()
}

// unchanged tells whether old and want hold the same services, cheaply:
// the agent calls Apply on every resync.
func unchanged(old, want map[string]service) bool {
	if len(old) != len(want) {
		return false
	}
	for id, n := range want {
		if o, ok := old[id]; !ok || !o.equal(n) {
			return false
		}
	}
	return true
}

// dnatRule sends a new connection to one of backends (at least one), the
// same port, picked at random.
func dnatRule(backends []netip.Addr) string {
	if len(backends) == 1 {
		return "dnat to " + backends[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dnat to numgen random mod %d map { ", len(backends))
	for i, a := range backends {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d : %s", i, a)
	}
	b.WriteString(" }")
	return b.String()
}

func sorted(services map[string]service) []service {
	out := make([]service, 0, len(services))
	for _, s := range services {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b service) int { return strings.Compare(a.id, b.id) })
	return out
}

func backendSet(services map[string]service) map[netip.Addr]bool {
	set := make(map[netip.Addr]bool)
	for _, s := range services {
		for _, a := range s.backends {
			set[a] = true
		}
	}
	return set
}

func hairpinElements(addrs map[netip.Addr]bool) []string {
	sortedAddrs := make([]netip.Addr, 0, len(addrs))
	for a := range addrs {
		sortedAddrs = append(sortedAddrs, a)
	}
	slices.SortFunc(sortedAddrs, netip.Addr.Compare)
	out := make([]string, len(sortedAddrs))
	for i, a := range sortedAddrs {
		out[i] = a.String() + " . " + a.String()
	}
	return out
}

// elementsPerLine keeps the lines of a large element list short.
const elementsPerLine = 16

func addElements(b *strings.Builder, table, set string, elems []string) {
	writeElements(b, "add", table, set, elems)
}

func deleteElements(b *strings.Builder, table, set string, elems []string) {
	writeElements(b, "delete", table, set, elems)
}

func writeElements(b *strings.Builder, verb, table, set string, elems []string) {
	if len(elems) == 0 {
		return
	}
	fmt.Fprintf(b, "%s element ip %s %s {", verb, table, set)
	for i, e := range elems {
		switch {
		case i == 0:
			b.WriteString(" ")
		case i%elementsPerLine == 0:
			b.WriteString(",\n\t")
		default:
			b.WriteString(", ")
		}
		b.WriteString(e)
	}
	b.WriteString(" }\n")
}
