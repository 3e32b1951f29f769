package network

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// The shared chains. Several nodes on one host (tests) share them; each
// node's rules carry a comment naming its bridge.
const (
	chainForward     = "SHOAL-FORWARD"     // filter
	chainIsolate     = "SHOAL-ISOLATE"     // filter: from a network to elsewhere
	chainIsolateDst  = "SHOAL-ISOLATE-DST" // filter: ... into another network: drop
	chainPostrouting = "SHOAL-POSTROUTING" // nat
	chainPorts       = "SHOAL-PORTS"       // nat
)

// jumps are the rules that send traffic to shoal's chains, and the one
// rule every node shares at the top of SHOAL-ISOLATE; insert says whether
// the rule must come before anything else in the chain (FORWARD: before a
// policy-enforcing DROP Docker may have left; SHOAL-FORWARD: isolation
// before the bridges' ACCEPTs). Connections that were destination-NATed
// (to a VIP, whose rules send a task only to backends on a network it
// shares with the service and refuse the rest, or to a published port)
// skip isolation: a task on several networks reaches a VIP from the
// address its route picks, which may be on another network than the
// backend's.
var jumps = []struct {
	table, chain string
	insert       bool
	spec         []string
}{
	{"filter", "FORWARD", true, []string{"-j", chainForward}},
	{"filter", chainForward, true, []string{"-j", chainIsolate}},
	{"filter", chainIsolate, true, []string{"-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN"}},
	{"nat", "POSTROUTING", true, []string{"-j", chainPostrouting}},
	{"nat", "PREROUTING", false, []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainPorts}},
	{"nat", "OUTPUT", false, []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainPorts}},
}

// netComment tags the rules of the network on bridge; the bridge's name
// is unique per node and network on a host.
func netComment(bridge string) string { return "shoal:" + bridge + ":node" }

func (n *Network) taskComment(id string) string { return "shoal:" + n.bridge + ":task:" + id }

func (n *Network) ensureChains() error {
	for _, c := range [][2]string{{"filter", chainForward}, {"filter", chainIsolate}, {"filter", chainIsolateDst}, {"nat", chainPostrouting}, {"nat", chainPorts}} {
		ok, err := n.ipt.ChainExists(c[0], c[1])
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if err := n.ipt.NewChain(c[0], c[1]); err != nil {
			// Another node on this host may have just made it.
			if ok, _ := n.ipt.ChainExists(c[0], c[1]); !ok {
				return err
			}
		}
	}
	for _, j := range jumps {
		var err error
		if j.insert {
			err = n.ipt.InsertUnique(j.table, j.chain, 1, j.spec...)
		} else {
			err = n.ipt.AppendUnique(j.table, j.chain, j.spec...)
		}
		if err != nil {
			return fmt.Errorf("jump from %s %s: %w", j.table, j.chain, err)
		}
	}
	return nil
}

// netRule is one rule a network needs.
type netRule struct {
	table, chain string
	spec         []string
}

// netRules lists the rules of network r, in the order they are appended.
// Isolation is address based, so that it holds for traffic routed in from
// other nodes as for traffic between two bridges of this node: traffic
// from the network to elsewhere goes to SHOAL-ISOLATE-DST, which drops it
// if elsewhere is another network. Two rules per network, not one per
// pair of networks.
func netRules(r *netRecord) []netRule {
	c := []string{"-m", "comment", "--comment", netComment(r.Bridge)}
	with := func(spec ...string) []string { return append(spec, c...) }
	return []netRule{
		{"filter", chainIsolate, append(with("-s", r.Subnet, "!", "-d", r.Subnet), "-j", chainIsolateDst)},
		{"filter", chainIsolateDst, append(with("-d", r.Subnet), "-j", "DROP")},
		{"filter", chainForward, append(with("-i", r.Bridge), "-j", "ACCEPT")},
		{"filter", chainForward, append(with("-o", r.Bridge), "-j", "ACCEPT")},
		{"nat", chainPostrouting, masqueradeSpec(r.Bridge, r.Subnet, r.Slice)},
		{"nat", chainPostrouting, hairpinSpec(r.Bridge, r.Slice)},
		{"nat", chainPostrouting, localnetSpec(r.Bridge)},
	}
}

// masqueradeSpec masquerades traffic from the node's slice to anywhere
// outside its network (traffic to another network never gets here: it is
// dropped in FORWARD); traffic to the network's other slices keeps its
// source address.
func masqueradeSpec(bridge, subnet, slice string) []string {
	return []string{"-s", slice, "!", "-d", subnet, "-m", "comment", "--comment", netComment(bridge), "-j", "MASQUERADE"}
}

func localnetSpec(bridge string) []string {
	return []string{"-s", "127.0.0.0/8", "-o", bridge, "-m", "comment", "--comment", netComment(bridge), "-j", "MASQUERADE"}
}

// hairpinSpec masquerades connections a task makes to a port published on
// this node that land on a task of the same bridge: without it the answer
// would go straight from task to task, from an address the caller never
// connected to.
func hairpinSpec(bridge, slice string) []string {
	return []string{"-s", slice, "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-m", "comment", "--comment", netComment(bridge), "-j", "MASQUERADE"}
}

// listedRules is the rules of some chains as `iptables -S` prints them,
// each as its arguments after "-A <chain>" joined by spaces, by
// "table chain".
type listedRules map[string]map[string]bool

// listNetChains lists the chains netRules fills: one iptables run per
// chain, where checking each rule of each network costs one run per rule
// (~15 ms each on the nft backend), and SetNetworks runs on every session
// message.
func (n *Network) listNetChains() listedRules {
	out := listedRules{}
	for _, rule := range netRules(&netRecord{}) {
		key := rule.table + " " + rule.chain
		if out[key] != nil {
			continue
		}
		lines, err := n.ipt.List(rule.table, rule.chain)
		if err != nil {
			continue // checked rule by rule instead
		}
		set := map[string]bool{}
		for _, line := range lines {
			if args := splitRule(line); len(args) > 2 && args[0] == "-A" {
				set[strings.Join(args[2:], " ")] = true
			}
		}
		out[key] = set
	}
	return out
}

// ensureNetRules appends the rules of network r that are missing. A rule
// found in have is taken as there; one not found is checked and appended
// by AppendUnique, so a listing printed differently from the spec costs
// time, never a duplicate.
func (n *Network) ensureNetRules(r *netRecord, have listedRules) error {
	for _, rule := range netRules(r) {
		if have[rule.table+" "+rule.chain][strings.Join(rule.spec, " ")] {
			continue
		}
		if err := n.ipt.AppendUnique(rule.table, rule.chain, rule.spec...); err != nil {
			return fmt.Errorf("%s %s: %w", rule.table, rule.chain, err)
		}
	}
	return nil
}

// removeNetRules deletes the rules made for network r's addresses.
func (n *Network) removeNetRules(r *netRecord) error {
	var errs []error
	for _, rule := range netRules(r) {
		if ok, err := n.ipt.ChainExists(rule.table, rule.chain); err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		if err := n.ipt.DeleteIfExists(rule.table, rule.chain, rule.spec...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTaggedNetRules deletes every rule tagged with bridge's network
// tag, whatever addresses it was made for.
func (n *Network) removeTaggedNetRules(bridge string) error {
	var errs []error
	for _, c := range [][2]string{{"filter", chainIsolate}, {"filter", chainIsolateDst}, {"filter", chainForward}, {"nat", chainPostrouting}} {
		if err := n.deleteTagged(c[0], c[1], func(tag string) bool { return tag == netComment(bridge) }); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Network) portSpec(r *taskRecord, p portRule) []string {
	ip, _, _ := net.ParseCIDR(r.primaryAddress())
	return []string{
		"-p", p.Protocol, "--dport", fmt.Sprint(p.Published),
		"-m", "comment", "--comment", n.taskComment(r.TaskID),
		"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", ip, p.Target),
	}
}

// prunePortRules deletes this bridge's port rules naming a task that is
// neither kept nor recorded.
func (n *Network) prunePortRules(keep map[string]bool) error {
	prefix := "shoal:" + n.bridge + ":task:"
	return n.deleteTagged("nat", chainPorts, func(tag string) bool {
		id, ok := strings.CutPrefix(tag, prefix)
		return ok && !keep[id] && n.tasks[id] == nil
	})
}

// deleteTagged deletes the rules of table/chain whose comment match
// accepts. A missing chain has no rules.
func (n *Network) deleteTagged(table, chain string, match func(tag string) bool) error {
	if ok, err := n.ipt.ChainExists(table, chain); err != nil || !ok {
		return err
	}
	rules, err := n.ipt.List(table, chain)
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range rules {
		args := splitRule(line)
		if len(args) < 2 || args[0] != "-A" {
			continue
		}
		if !match(commentOf(args)) {
			continue
		}
		if err := n.ipt.DeleteIfExists(table, chain, args[2:]...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteRule deletes a rule if it exists, in one iptables run where
// DeleteIfExists takes two.
func deleteRule(ipt *iptables.IPTables, table, chain string, spec []string) error {
	err := ipt.Delete(table, chain, spec...)
	var e *iptables.Error
	if errors.As(err, &e) && e.IsNotExist() {
		return nil
	}
	return err
}

func commentOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--comment" {
			return args[i+1]
		}
	}
	return ""
}

// splitRule splits a line of `iptables -S` into arguments, honouring the
// double quotes and backslash escapes iptables prints around comments.
func splitRule(line string) []string {
	var out []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == '"':
			quoted = !quoted
			inWord = true
		case c == ' ' && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}
