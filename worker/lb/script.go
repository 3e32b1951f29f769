package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The table's fixed part. Chains of services are jumped to from two
// verdict maps: sourced (client address . VIP → jump to the chain of the
// service's backends for that client), looked up on prerouting, where a
// node's tasks' connections arrive, and vips (VIP → jump to the chain of
// the service's Backends), looked up on output, the node's own
// connections. A packet still addressed to a VIP after prerouting's NAT
// (a client with no Source, or one whose Source has no backends) is
// rejected (set vipaddrs, every VIP), as is one from the node to a VIP
// whose Backends are empty (set closed). hairpin holds "backend . backend"
// for every backend, so that a task DNATed to itself is masqueraded (the
// kernel drops a packet from one of its own addresses as a martian). The
// output nat chain says -100: nft 1.0.6 refuses the dstnat keyword there.
const baseChains = `	set closed {
		type ipv4_addr
	}
	set vipaddrs {
		type ipv4_addr
	}
	set hairpin {
		type ipv4_addr . ipv4_addr
	}
	map vips {
		type ipv4_addr : verdict
	}
	map sourced {
		type ipv4_addr . ipv4_addr : verdict
		flags interval
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip saddr . ip daddr vmap @sourced
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
		ip daddr @vipaddrs meta l4proto tcp reject with tcp reset
		ip daddr @vipaddrs reject
	}
	chain reject_out {
		type filter hook output priority filter; policy accept;
		ip daddr @closed meta l4proto tcp reject with tcp reset
		ip daddr @closed reject
	}
`

// The element sets and maps a service has elements in, in the order a
// script writes them.
const (
	setVips = iota
	setSourced
	setClosed
	setVIPAddrs
	numSets
)

var setNames = [numSets]string{"vips", "sourced", "closed", "vipaddrs"}

// element is one element of a set (value empty) or a map.
type element struct{ key, value string }

func (e element) String() string {
	if e.value == "" {
		return e.key
	}
	return e.key + " : " + e.value
}

// chainRule is one of a service's chains and its only rule.
type chainRule struct{ name, rule string }

// objects are what a service puts in the table, besides hairpin.
type objects struct {
	elems  [numSets][]element
	chains []chainRule
}

// objects lists s's chains and elements: its catch-all first, then its
// sources by prefix.
func (s service) objects() objects {
	var o objects
	vip := s.vip.String()
	o.elems[setVIPAddrs] = append(o.elems[setVIPAddrs], element{key: vip})
	if len(s.backends) == 0 {
		o.elems[setClosed] = append(o.elems[setClosed], element{key: vip})
	} else {
		o.chains = append(o.chains, chainRule{s.chain, dnatRule(s.backends)})
		o.elems[setVips] = append(o.elems[setVips], element{vip, "jump " + s.chain})
	}
	for _, src := range s.sources {
		if len(src.backends) == 0 {
			continue // no element: the client is rejected
		}
		key := src.from.String() + " . " + vip
		o.chains = append(o.chains, chainRule{src.chain, dnatRule(src.backends)})
		o.elems[setSourced] = append(o.elems[setSourced], element{key, "jump " + src.chain})
	}
	return o
}

// fullScript replaces the table, whatever it held, with one holding
// services: "add" then "delete" makes the delete valid when there is no
// table, and nft runs the whole script as one transaction.
func fullScript(table string, services map[string]service) string {
	var b strings.Builder
	fmt.Fprintf(&b, "add table ip %s\ndelete table ip %s\ntable ip %s {\n%s", table, table, table, baseChains)
	var elems [numSets][]string
	for _, s := range sorted(services) {
		o := s.objects()
		for _, c := range o.chains {
			fmt.Fprintf(&b, "\tchain %s {\n\t\t%s\n\t}\n", c.name, c.rule)
		}
		for set, es := range o.elems {
			for _, e := range es {
				elems[set] = append(elems[set], e.String())
			}
		}
	}
	b.WriteString("}\n")
	for set, es := range elems {
		addElements(&b, table, setNames[set], es)
	}
	addElements(&b, table, "hairpin", hairpinElements(backendSet(services)))
	return b.String()
}

// updateScript turns the table from holding old into holding want, writing
// only what differs, or returns "" when nothing does. Only services that
// changed are looked at, and of those only the elements and chains that
// differ are written. Deletions come first so that a VIP moving from one
// service to another is free when added, and a map element whose verdict
// changes is deleted and added again.
func updateScript(table string, old, want map[string]service) string {
	if unchanged(old, want) {
		return ""
	}
	var del, add [numSets][]string
	var delChains []string
	var rules strings.Builder
	for _, id := range changedIDs(old, want) {
		var before, after objects
		if o, ok := old[id]; ok {
			before = o.objects()
		}
		if n, ok := want[id]; ok {
			after = n.objects()
		}
		for set := range numSets {
			was, is := byKey(before.elems[set]), byKey(after.elems[set])
			for _, e := range before.elems[set] {
				if v, ok := is[e.key]; !ok || v != e.value {
					del[set] = append(del[set], e.key)
				}
			}
			for _, e := range after.elems[set] {
				if v, ok := was[e.key]; !ok || v != e.value {
					add[set] = append(add[set], e.String())
				}
			}
		}
		hadRule := make(map[string]string, len(before.chains))
		for _, c := range before.chains {
			hadRule[c.name] = c.rule
		}
		keep := make(map[string]bool, len(after.chains))
		for _, c := range after.chains {
			keep[c.name] = true
			rule, had := hadRule[c.name]
			switch {
			case !had:
				fmt.Fprintf(&rules, "add chain ip %s %s\n", table, c.name)
			case rule != c.rule:
				fmt.Fprintf(&rules, "flush chain ip %s %s\n", table, c.name)
			default:
				continue
			}
			fmt.Fprintf(&rules, "add rule ip %s %s %s\n", table, c.name, c.rule)
		}
		for _, c := range before.chains {
			if !keep[c.name] {
				delChains = append(delChains, c.name)
			}
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
	for set := range numSets {
		deleteElements(&b, table, setNames[set], del[set])
	}
	deleteElements(&b, table, "hairpin", hairpinElements(delHairpin))
	for _, c := range delChains {
		fmt.Fprintf(&b, "delete chain ip %s %s\n", table, c)
	}
	b.WriteString(rules.String())
	for set := range numSets {
		addElements(&b, table, setNames[set], add[set])
	}
	addElements(&b, table, "hairpin", hairpinElements(addHairpin))
	return b.String()
}

// changedIDs lists, sorted, the IDs of services added, removed or changed
// from old to want.
func changedIDs(old, want map[string]service) []string {
	var ids []string
	for id, o := range old {
		if n, ok := want[id]; !ok || !n.equal(o) {
			ids = append(ids, id)
		}
	}
	for id := range want {
		if _, ok := old[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func byKey(elems []element) map[string]string {
	m := make(map[string]string, len(elems))
	for _, e := range elems {
		m[e.key] = e.value
	}
	return m
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

// backendSet is every backend address of services, of every source: the
// hairpin set's members.
func backendSet(services map[string]service) map[netip.Addr]bool {
	set := make(map[netip.Addr]bool)
	for _, s := range services {
		s.allBackends(func(a netip.Addr) { set[a] = true })
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
