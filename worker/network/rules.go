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
	chainPostrouting = "SHOAL-POSTROUTING" // nat
	chainPorts       = "SHOAL-PORTS"       // nat
)

// jumps are the rules in built-in chains that send traffic to shoal's
// chains; insert says whether the jump must come before anything else in
// the chain (FORWARD: before a policy-enforcing DROP Docker may have left).
var jumps = []struct {
	table, chain string
	insert       bool
	spec         []string
}{
	{"filter", "FORWARD", true, []string{"-j", chainForward}},
	{"nat", "POSTROUTING", true, []string{"-j", chainPostrouting}},
	{"nat", "PREROUTING", false, []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainPorts}},
	{"nat", "OUTPUT", false, []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainPorts}},
}

func (n *Network) nodeComment() string { return "shoal:" + n.bridge + ":node" }

func (n *Network) taskComment(id string) string { return "shoal:" + n.bridge + ":task:" + id }

func (n *Network) ensureChains() error {
	for _, c := range [][2]string{{"filter", chainForward}, {"nat", chainPostrouting}, {"nat", chainPorts}} {
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

func (n *Network) forwardSpecs() [][]string {
	c := []string{"-m", "comment", "--comment", n.nodeComment()}
	return [][]string{
		append([]string{"-i", n.bridge}, append(c, "-j", "ACCEPT")...),
		append([]string{"-o", n.bridge}, append(c, "-j", "ACCEPT")...),
	}
}

func (n *Network) masqueradeSpec(pool, subnet string) []string {
	return []string{"-s", subnet, "!", "-d", pool, "-m", "comment", "--comment", n.nodeComment(), "-j", "MASQUERADE"}
}

func (n *Network) localnetSpec() []string {
	return []string{"-s", "127.0.0.0/8", "-o", n.bridge, "-m", "comment", "--comment", n.nodeComment(), "-j", "MASQUERADE"}
}

// hairpinSpec masquerades connections a task makes to a port published on
// this node that land on a task of the same bridge: without it the answer
// would go straight from task to task, from an address the caller never
// connected to.
func (n *Network) hairpinSpec(subnet string) []string {
	return []string{"-s", subnet, "-o", n.bridge, "-m", "conntrack", "--ctstate", "DNAT", "-m", "comment", "--comment", n.nodeComment(), "-j", "MASQUERADE"}
}

func (n *Network) ensureNodeRules(pool, sub *net.IPNet) error {
	for _, s := range n.forwardSpecs() {
		if err := n.ipt.AppendUnique("filter", chainForward, s...); err != nil {
			return err
		}
	}
	if err := n.ipt.AppendUnique("nat", chainPostrouting, n.masqueradeSpec(pool.String(), sub.String())...); err != nil {
		return err
	}
	if err := n.ipt.AppendUnique("nat", chainPostrouting, n.hairpinSpec(sub.String())...); err != nil {
		return err
	}
	return n.ipt.AppendUnique("nat", chainPostrouting, n.localnetSpec()...)
}

// removeSubnetRules deletes the rules made for one subnet of the pool.
func (n *Network) removeSubnetRules(pool, subnet string) error {
	if ok, err := n.ipt.ChainExists("nat", chainPostrouting); err != nil || !ok {
		return err
	}
	if err := n.ipt.DeleteIfExists("nat", chainPostrouting, n.masqueradeSpec(pool, subnet)...); err != nil {
		return err
	}
	return n.ipt.DeleteIfExists("nat", chainPostrouting, n.hairpinSpec(subnet)...)
}

// removeNodeRules deletes every rule tagged with this bridge's node tag,
// whatever subnet it was made for.
func (n *Network) removeNodeRules() error {
	var errs []error
	for _, c := range [][2]string{{"filter", chainForward}, {"nat", chainPostrouting}} {
		if err := n.deleteTagged(c[0], c[1], func(tag string) bool { return tag == n.nodeComment() }); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Network) portSpec(r *taskRecord, p portRule) []string {
	ip, _, _ := net.ParseCIDR(r.Address)
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
