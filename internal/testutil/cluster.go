package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Option changes how NewCluster starts its daemons.
type Option func(*options)

type options struct {
	initArgs   []string
	daemonArgs []string
	hosts      bool
	dnsPort    int // WithHostDNS
}

// WithInitArgs adds arguments to `shoal init` of the first manager, e.g.
// "--cert-expiry", "30s" or "--heartbeat-period", "200ms".
func WithInitArgs(args ...string) Option {
	return func(o *options) { o.initArgs = append(o.initArgs, args...) }
}

// WithDaemonArgs adds arguments to every daemon the cluster starts (init,
// join and the `shoal daemon` of Restart), e.g. "--raft-snapshot-threshold",
// "16" or "--log-level", "debug".
func WithDaemonArgs(args ...string) Option {
	return func(o *options) { o.daemonArgs = append(o.daemonArgs, args...) }
}

// Cluster is a set of shoal daemons on this machine, each on its own
// loopback address. Managers and Workers hold the nodes in the role they
// were started with; promotions and demotions do not move them.
type Cluster struct {
	Managers, Workers []*Node

	dir  string
	bin  string
	opts options
	net  *hostNet // WithHosts

	mu    sync.Mutex
	nodes []*Node        // every node created, for cleanup
	names map[string]int // last number used per name prefix
}

// NewCluster starts a cluster of real processes: `shoal init` on the first
// manager, then `shoal join` of the other managers and the workers, all at
// once. It returns when every node is ready in every manager's `node ls` and
// every manager is leader or reachable. tb.Cleanup kills every daemon and
// the tasks they started (which outlive their daemon), and removes the data
// dirs; after a failure it prints the end of each node's log and keeps the
// logs.
func NewCluster(tb testing.TB, managers, workers int, opts ...Option) *Cluster {
	tb.Helper()
	if managers < 1 || workers < 0 {
		tb.Fatalf("NewCluster: need at least one manager and no negative worker count, got %d and %d", managers, workers)
	}
	c := newCluster(tb, opts)
	first := c.NewNode(tb, "m")
	args := []string{"init", "--data-dir", first.DataDir, "--advertise-addr", first.IP}
	args = append(args, c.opts.initArgs...)
	first.Start(tb, append(args, c.opts.daemonArgs...)...)
	c.Managers = append(c.Managers, first)
	first.WaitServing(tb)
	var managerToken, workerToken string
	Eventually(tb, StartTimeout, func() error {
		requireRunning(tb, first)
		var err error
		if managerToken, err = first.token(tb, "manager"); err != nil {
			return err
		}
		workerToken, err = first.token(tb, "worker")
		return err
	})
	var started []*Node
	for i := 1; i < managers; i++ {
		n := c.NewNode(tb, "m")
		c.startJoin(tb, n, managerToken, first.Addr)
		c.Managers = append(c.Managers, n)
		started = append(started, n)
	}
	for i := 0; i < workers; i++ {
		n := c.NewNode(tb, "w")
		c.startJoin(tb, n, workerToken, first.Addr)
		c.Workers = append(c.Workers, n)
		started = append(started, n)
	}
	c.waitHealthy(tb, append(started, first))
	return c
}

func newCluster(tb testing.TB, opts []Option) *Cluster {
	bin := Binary(tb)
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "shoal-")
	if err != nil {
		tb.Fatalf("NewCluster: %v", err)
	}
	c := &Cluster{dir: dir, bin: bin, names: map[string]int{}}
	for _, o := range opts {
		o(&c.opts)
	}
	tb.Cleanup(func() { c.cleanup(tb) })
	if c.opts.hosts {
		c.net = newHostNet(tb)
		if c.opts.dnsPort != 0 {
			c.opts.daemonArgs = append(c.opts.daemonArgs, "--dns-upstream", net.JoinHostPort(c.net.gateway, strconv.Itoa(c.opts.dnsPort)))
		}
	}
	return c
}

// Dir is the directory holding the nodes' data dirs and logs.
func (c *Cluster) Dir() string { return c.dir }

// NewNode creates a node with a fresh address and an empty data dir path
// but starts nothing; it is killed and removed with the cluster. prefix
// names it (prefix1, prefix2, …). Use it for nodes a test starts itself with
// Node.Start, e.g. a join that must fail. It is not added to Managers or
// Workers.
func (c *Cluster) NewNode(tb testing.TB, prefix string) *Node {
	tb.Helper()
	var netns, ip string
	if c.net != nil {
		netns, ip = c.net.newHost(tb)
	} else {
		ip = FreeIP(tb)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names[prefix]++
	n := newNode(c.bin, c.dir, prefix+strconv.Itoa(c.names[prefix]), ip)
	n.netns = netns
	n.extraArgs = c.opts.daemonArgs
	c.nodes = append(c.nodes, n)
	return n
}

func (c *Cluster) startJoin(tb testing.TB, n *Node, token, managerAddr string) {
	tb.Helper()
	args := []string{"join", "--token", token, "--data-dir", n.DataDir, "--advertise-addr", n.IP}
	args = append(args, c.opts.daemonArgs...)
	n.Start(tb, append(args, managerAddr)...)
}

// AddManager joins a new manager through the leader and waits until the
// cluster is healthy again.
func (c *Cluster) AddManager(tb testing.TB) *Node {
	tb.Helper()
	return c.add(tb, "manager")
}

// AddWorker joins a new worker through the leader and waits until the
// cluster is healthy again.
func (c *Cluster) AddWorker(tb testing.TB) *Node {
	tb.Helper()
	return c.add(tb, "worker")
}

func (c *Cluster) add(tb testing.TB, role string) *Node {
	tb.Helper()
	leader := c.Leader(tb)
	token := c.Token(tb, role)
	n := c.NewNode(tb, role[:1])
	c.startJoin(tb, n, token, leader.Addr)
	c.mu.Lock()
	if role == "manager" {
		c.Managers = append(c.Managers, n)
	} else {
		c.Workers = append(c.Workers, n)
	}
	c.mu.Unlock()
	c.waitHealthy(tb, []*Node{n})
	return n
}

// Token returns the current join token for role ("worker" or "manager").
func (c *Cluster) Token(tb testing.TB, role string) string {
	tb.Helper()
	leader := c.Leader(tb)
	token, err := leader.token(tb, role)
	if err != nil {
		tb.Fatalf("join token: %v", err)
	}
	return token
}

func (n *Node) token(tb testing.TB, role string) (string, error) {
	out, err := n.Shoal(tb, "join-token", "-q", role)
	return strings.TrimSpace(out), err
}

// Nodes returns Managers and Workers.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(append([]*Node(nil), c.Managers...), c.Workers...)
}

// Leader polls until a running node reports itself the Raft leader and
// returns it.
func (c *Cluster) Leader(tb testing.TB) *Node {
	tb.Helper()
	var leader *Node
	Eventually(tb, SettleTimeout, func() error {
		var errs []error
		for _, n := range c.Nodes() {
			if !n.Running() {
				continue
			}
			out, err := n.Shoal(tb, "info", "--format", "{{.NodeId}} {{.LeaderId}}")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			self, lead, _ := strings.Cut(strings.TrimSpace(out), " ")
			if self != "" && self == lead {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("no running node reports itself leader: %w", errors.Join(errs...))
	})
	return leader
}

// WaitHealthy waits until every running node of Managers and Workers is
// ready in the `node ls` of every running manager, with the role its data
// dir records, every running manager is leader or reachable, and there is
// exactly one leader.
func (c *Cluster) WaitHealthy(tb testing.TB) {
	tb.Helper()
	c.waitHealthy(tb, nil)
}

// waitHealthy is WaitHealthy, failing at once if one of mustRun exits.
func (c *Cluster) waitHealthy(tb testing.TB, mustRun []*Node) {
	tb.Helper()
	Eventually(tb, SettleTimeout, func() error {
		requireRunning(tb, mustRun...)
		return c.health(tb)
	})
}

// requireRunning fails the test at once if a node's daemon has exited:
// waiting for it is pointless.
func requireRunning(tb testing.TB, nodes ...*Node) {
	tb.Helper()
	for _, n := range nodes {
		if !n.Running() {
			tb.Fatalf("%s: the daemon exited (%v); end of its log:\n%s", n.Name, n.ExitErr(), Tail(n.Log(tb), 40))
		}
	}
}

func (c *Cluster) health(tb testing.TB) error {
	tb.Helper()
	want := map[string]*Node{}
	roles := map[string]string{}
	var viewers []*Node
	for _, n := range c.Nodes() {
		if !n.Running() {
			continue
		}
		id, err := n.identity()
		if err != nil {
			return err
		}
		want[id.NodeID], roles[id.NodeID] = n, id.Role
		if id.Role == "manager" {
			viewers = append(viewers, n)
		}
	}
	if len(viewers) == 0 {
		return errors.New("no manager is running")
	}
	for _, v := range viewers {
		rows, err := v.NodeLs(tb)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		leaders := 0
		for _, r := range rows {
			if r.ManagerStatus == "leader" {
				leaders++
			}
			n, ok := want[r.ID]
			if !ok {
				continue
			}
			seen[r.ID] = true
			switch {
			case r.Status != "ready":
				return fmt.Errorf("%s lists %s as %s, want ready", v.Name, n.Name, r.Status)
			case r.Role != roles[r.ID]:
				return fmt.Errorf("%s lists %s as a %s, its data dir says %s", v.Name, n.Name, r.Role, roles[r.ID])
			case r.Role == "manager" && r.ManagerStatus != "leader" && r.ManagerStatus != "reachable":
				return fmt.Errorf("%s lists manager %s as %q, want leader or reachable", v.Name, n.Name, r.ManagerStatus)
			}
		}
		for id, n := range want {
			if !seen[id] {
				return fmt.Errorf("%s does not list %s (%s)", v.Name, n.Name, id)
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%s lists %d leaders, want 1", v.Name, leaders)
		}
	}
	return nil
}

// crashPattern finds a Go panic, fatal error or race report in a log.
var crashPattern = regexp.MustCompile(`(?m)^(panic: |fatal error: |WARNING: DATA RACE)`)

func (c *Cluster) cleanup(tb testing.TB) {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if p := n.current(); p != nil && !p.exited() {
			p.killGroup()
			<-p.done
		}
	}
	for _, n := range nodes {
		if err := n.stopTasks(); err != nil {
			tb.Errorf("%v", err)
		}
		if err := n.purge(); err != nil {
			tb.Errorf("%v", err)
		}
	}
	if c.net != nil {
		if err := c.net.cleanup(); err != nil {
			tb.Errorf("WithHosts cleanup: %v", err)
		}
	}
	for _, n := range nodes {
		if log := n.Log(tb); crashPattern.MatchString(log) {
			loc := crashPattern.FindStringIndex(log)
			tb.Errorf("%s: the daemon crashed:\n%s", n.Name, firstLines(log[loc[0]:], 40))
		}
	}
	logs := false
	if tb.Failed() {
		for _, n := range nodes {
			if log := n.Log(tb); log != "" {
				logs = true
				tb.Logf("==== %s (%s, %s), end of log:\n%s", n.Name, n.IP, n.logPath, Tail(log, 60))
			}
		}
	}
	if os.Getenv("SHOAL_TEST_KEEP") != "" {
		tb.Logf("cluster files kept in %s", c.dir)
		return
	}
	if !logs {
		os.RemoveAll(c.dir)
		return
	}
	for _, n := range nodes {
		os.RemoveAll(n.DataDir)
	}
	tb.Logf("node logs kept in %s", c.dir)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
