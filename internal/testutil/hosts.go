package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Hosts are network namespaces standing in for machines: each node of a
// cluster made WithHosts runs in one, with its own eth0 address, routes and
// iptables, and a bridge in the test's namespace joins them like a switch.
// Task traffic between nodes then crosses a real network path (veth, bridge,
// the nodes' routes), and every node can own the same bridge name and
// iptables chains as on a real machine.
//
// Namespaces, links and addresses are named after the test process (pid),
// so parallel test binaries never share one; each cluster gets a /24 of
// 10.199.0.0/16 that no interface of this machine holds yet.
type hostNet struct {
	bridge  string // in the test's namespace, holds the gateway address
	prefix  string // "10.199.K." — the cluster's hosts are prefix+1 … prefix+250
	gateway string // prefix + "254"

	mu    sync.Mutex
	hosts []string // namespaces made, for cleanup
	links []string // host-side veths made
}

// hostNets counts the host networks of this process, naming their bridges.
var hostNets struct {
	sync.Mutex
	n int
}

// WithHosts starts every node in a network namespace of its own (a "host"),
// joined to the others by a bridge, instead of on a loopback address of the
// test's namespace. The containerd runtime needs it: each node makes its own
// bridge, routes and iptables rules. Needs root and iproute2; a test that
// asks for it without them fails under CI=true and is skipped otherwise.
func WithHosts() Option {
	return func(o *options) { o.hosts = true }
}

// WithHostDNS (with WithHosts) makes every node's DNS forward names outside
// the cluster to port on the test's namespace (Cluster.Gateway), where a
// test can run a resolver of its own.
func WithHostDNS(port int) Option {
	return func(o *options) { o.dnsPort = port }
}

// Gateway is the test namespace's address on the hosts' bridge (WithHosts):
// every node reaches it.
func (c *Cluster) Gateway() string { return c.net.gateway }

// RequireRoot fails the test under CI=true, or skips it otherwise, when the
// test process is not root or lacks one of the commands.
func RequireRoot(tb testing.TB, commands ...string) {
	tb.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("this test needs %s (scripts/install-deps.sh installs the commands)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

func newHostNet(tb testing.TB) *hostNet {
	tb.Helper()
	RequireRoot(tb, "ip", "nsenter", "iptables")
	hostNets.Lock()
	hostNets.n++
	k := hostNets.n
	hostNets.Unlock()
	h := &hostNet{bridge: fmt.Sprintf("shb%d-%d", os.Getpid()%100000, k)}
	used := usedPrefixes()
	for third := (os.Getpid()*7 + k) % 250; ; third = (third + 1) % 250 {
		p := fmt.Sprintf("10.199.%d.", third)
		if !used[p] {
			h.prefix = p
			break
		}
		if len(used) >= 250 {
			tb.Fatal("WithHosts: every /24 of 10.199.0.0/16 is in use on this machine")
		}
	}
	h.gateway = h.prefix + "254"
	err := h.sh(
		"ip link add "+h.bridge+" type bridge",
		"ip addr add "+h.gateway+"/24 dev "+h.bridge,
		"ip link set "+h.bridge+" up",
	)
	if err == nil {
		err = h.sh(h.rules("-I")...)
	}
	if err != nil {
		h.cleanup()
		tb.Fatalf("WithHosts: %v", err)
	}
	return h
}

// rules are the iptables rules that let the hosts out as a machine's LAN
// would (op is -I to add them, -D to delete them): forwarded through the
// test's namespace (bridged frames pass FORWARD when br_netfilter is loaded,
// and a host where Docker once ran drops forwarded traffic) and masqueraded
// beyond the bridge. Without them a host's DNS queries and registry pulls
// would hang until their timeouts instead of failing as fast as the
// machine's own. The kernel's ip_forward is switched on and left on: other
// test processes' hosts may rely on it.
func (h *hostNet) rules(op string) []string {
	subnet := h.prefix + "0/24"
	rules := []string{
		"iptables " + op + " FORWARD -i " + h.bridge + " -j ACCEPT",
		"iptables " + op + " FORWARD -o " + h.bridge + " -j ACCEPT",
		"iptables -t nat " + op + " POSTROUTING -s " + subnet + " ! -o " + h.bridge + " -j MASQUERADE",
	}
	if op == "-I" {
		rules = append([]string{"sysctl -qw net.ipv4.ip_forward=1"}, rules...)
	}
	return rules
}

// usedPrefixes are the 10.199.K. prefixes held by interfaces of the test's
// namespace (other test processes' bridges).
func usedPrefixes() map[string]bool {
	used := map[string]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ip, _, err := net.ParseCIDR(a.String())
		if err != nil || ip.To4() == nil {
			continue
		}
		v4 := ip.To4()
		if v4[0] == 10 && v4[1] == 199 {
			used[fmt.Sprintf("10.199.%d.", v4[2])] = true
		}
	}
	return used
}

// newHost makes the namespace of one node and returns its name and address.
func (h *hostNet) newHost(tb testing.TB) (netns, ip string) {
	tb.Helper()
	h.mu.Lock()
	n := len(h.hosts) + 1
	if n > 250 {
		h.mu.Unlock()
		tb.Fatal("WithHosts: more than 250 hosts in one cluster")
	}
	netns = fmt.Sprintf("%s-h%d", h.bridge, n)
	link := fmt.Sprintf("%sv%d", strings.TrimPrefix(h.bridge, "shb"), n)
	h.hosts = append(h.hosts, netns)
	h.links = append(h.links, link)
	h.mu.Unlock()
	ip = fmt.Sprintf("%s%d", h.prefix, n)
	in := "ip -n " + netns + " "
	if err := h.sh(
		"ip netns add "+netns,
		"ip link add "+link+" type veth peer name eth0 netns "+netns,
		"ip link set "+link+" master "+h.bridge+" up",
		in+"addr add "+ip+"/24 dev eth0",
		in+"link set eth0 up",
		in+"link set lo up",
		in+"route add default via "+h.gateway,
	); err != nil {
		tb.Fatalf("WithHosts: %v", err)
	}
	return netns, ip
}

// cleanup removes the namespaces, veths, bridge and rule. The nodes'
// processes must be gone.
func (h *hostNet) cleanup() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, ns := range h.hosts {
		if err := h.sh("ip netns delete " + ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, link := range h.links {
		_ = h.sh("ip link delete " + link) // gone with its namespace's peer
	}
	for _, rule := range h.rules("-D") {
		_ = h.sh(rule)
	}
	if err := h.sh("ip link delete " + h.bridge); err != nil {
		errs = append(errs, err)
	}
	h.hosts, h.links = nil, nil
	return errors.Join(errs...)
}

// sh runs commands in order, stopping at the first failure.
func (h *hostNet) sh(commands ...string) error {
	for _, c := range commands {
		f := strings.Fields(c)
		if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", c, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// Dial connects from the node's host: the socket is made in the node's
// network namespace, so task addresses, which only the cluster's hosts
// route, are reachable. Without WithHosts it dials from the test's own.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if n.netns == "" {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return DialIn(ctx, n.netns, network, addr)
}

// DialIn connects from a socket made in the network namespace name (as
// `ip netns` names it); the connection then lives in that namespace.
func DialIn(ctx context.Context, name, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	// The thread enters the namespace only to create the socket and goes
	// back before it is unlocked. It must not end locked instead: the
	// kernel sends a child's Pdeathsig when the thread that started it
	// exits, and the harness starts daemons with one.
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath("/var/run/netns/" + name)
		if err != nil {
			goruntime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			goruntime.UnlockOSThread()
			done <- result{err: fmt.Errorf("enter %s: %w", name, err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if netns.Set(orig) == nil {
			// Back home: the thread may serve others again. Otherwise
			// it stays locked and ends with this goroutine.
			goruntime.UnlockOSThread()
		}
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}

// HTTPClient is an HTTP client whose connections start on the node's host
// (see Dial) and are never reused, so every request crosses the network.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: n.Dial, DisableKeepAlives: true}}
}
