package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coreos/go-iptables/iptables"

	"shoal/internal/jsonfile"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// DefaultBridge is the bridge a node's tasks are attached to unless
// Config.Bridge says otherwise.
const DefaultBridge = "shoal0"

var (
	// ErrNoSubnet: SetPeers was called before SetNetworks.
	ErrNoSubnet = errors.New("network: the node has no task network yet")
	// ErrUnknownNetwork: a task is on a network SetNetworks has not made on
	// this node (in time).
	ErrUnknownNetwork = errors.New("network: unknown network")
	// ErrBadAddress: a task's address is missing, malformed or outside the
	// node's slice of its network.
	ErrBadAddress = errors.New("network: bad task address")
	// ErrPortInUse: another task on this node already publishes the port.
	ErrPortInUse = errors.New("network: published port already in use on this node")
)

// Config configures a node's Network.
type Config struct {
	// DataDir is the node's data directory; records and per-task files
	// live under DataDir/network.
	DataDir string
	// Bridge is the bridge's name (DefaultBridge when empty). It also names
	// this node's iptables rules.
	Bridge string
	// DNS, when set, are the nameservers written to every task's
	// resolv.conf instead of the host's.
	DNS []string
	// ClusterDNS points every task's resolv.conf at the node's own DNS
	// server on the bridge's gateway address (netdns), with ndots:0 so
	// that service names are asked as they are. It overrides DNS.
	ClusterDNS bool
	Logger     *slog.Logger
}

// Network implements runtime.Network on one node. All methods are safe for
// concurrent use. The mutex guards the records only: the netlink and
// iptables work of Attach and Detach (several ms each, far more on a loaded
// node) runs outside it, so tasks attach and detach in parallel; a task
// being attached or detached is marked busy, and another call for the same
// task, Prune and SetNetworks wait until it is not.
type Network struct {
	bridge     string
	dir        string // DataDir/network
	nodeTag    string // 8 hex digits naming this node's namespaces and veths
	dns        []string
	clusterDNS bool
	log        *slog.Logger
	ipt        *iptables.IPTables

	mu   sync.Mutex
	idle *sync.Cond // signalled (with mu) when a task stops being busy
	// netsChanged is signalled (with mu) when SetNetworks or Destroy
	// changed the networks, for Attach waiting for one.
	netsChanged *sync.Cond
	node        nodeRecord
	tasks       map[string]*taskRecord // by task ID, as recorded on disk
	busy        map[string]bool        // tasks whose Attach or Detach runs

	// byAddr maps each address of a recorded task to its networks;
	// rebuilt whole (under mu) after a change of the records, read without
	// a lock by NetworksOf on every DNS query.
	byAddr atomic.Pointer[map[netip.Addr]TaskAddr]
	// onTasks is told each new byAddr (OnTasksChanged).
	onTasks atomic.Pointer[func(map[netip.Addr]TaskAddr)]
}

// TaskAddr is what the node knows of one address of one of its tasks.
type TaskAddr struct {
	Network  string   // the network the address is on
	Networks []string // all the task's networks, its primary one first
}

var _ runtime.Network = (*Network)(nil)

// New loads what an earlier run of the node recorded under
// DataDir/network; it changes nothing on the host until SetNetworks, Attach,
// Detach or Prune is called.
func New(cfg Config) (*Network, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("network: Config.DataDir is empty; give the node's data directory")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("network: data directory %q: %w", cfg.DataDir, err)
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if len(cfg.Bridge) > 15 || strings.ContainsAny(cfg.Bridge, ": /") {
		return nil, fmt.Errorf("network: bridge name %q: use at most 15 characters without ':', '/' or spaces", cfg.Bridge)
	}
	for _, s := range cfg.DNS {
		if net.ParseIP(s) == nil {
			return nil, fmt.Errorf("network: Config.DNS entry %q is not an IP address", s)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return nil, fmt.Errorf("network: iptables: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	n := &Network{
		bridge:     cfg.Bridge,
		dir:        filepath.Join(abs, "network"),
		nodeTag:    hex.EncodeToString(sum[:4]),
		dns:        cfg.DNS,
		clusterDNS: cfg.ClusterDNS,
		log:        cfg.Logger.With("component", "network", "bridge", cfg.Bridge),
		ipt:        ipt,
		tasks:      map[string]*taskRecord{},
		busy:       map[string]bool{},
	}
	n.idle = sync.NewCond(&n.mu)
	n.netsChanged = sync.NewCond(&n.mu)
	if err := os.MkdirAll(filepath.Join(n.dir, "tasks"), 0o755); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := n.load(); err != nil {
		return nil, err
	}
	return n, nil
}

// taskRecord is what Attach made for a task, written to disk before it is
// made so that a crash leaves Prune enough to undo it.
type taskRecord struct {
	TaskID string `json:"task_id"`
	NetNS  string `json:"netns"` // name under /run/netns
	// Links are the task's interfaces, eth0 (the primary network) first.
	Links []taskLink `json:"links,omitempty"`
	// Veth and Address are a record from before networks (one veth on
	// the default network); load turns them into Links.
	Veth    string     `json:"veth,omitempty"`
	Address string     `json:"address,omitempty"`
	Ports   []portRule `json:"ports,omitempty"`
	// Complete is false while Attach is still making things.
	Complete bool `json:"complete"`
}

// taskLink is one interface of a task: eth<i> in its namespace.
type taskLink struct {
	Network string `json:"network"`
	Veth    string `json:"veth"`    // host side
	Address string `json:"address"` // CIDR, with the slice's prefix length
}

// migrate turns a record from before networks into one link on the
// default network.
func (r *taskRecord) migrate() {
	if len(r.Links) == 0 && (r.Veth != "" || r.Address != "") {
		r.Links = []taskLink{{Network: DefaultID, Veth: r.Veth, Address: r.Address}}
	}
	r.Veth, r.Address = "", ""
}

// primaryAddress is the address (CIDR) on the primary network, "" if none.
func (r *taskRecord) primaryAddress() string {
	if len(r.Links) == 0 {
		return ""
	}
	return r.Links[0].Address
}

type portRule struct {
	Protocol  string `json:"protocol"`
	Published uint32 `json:"published"`
	Target    uint32 `json:"target"`
}

func (r *taskRecord) attachment(n *Network) runtime.Attachment {
	ip, _, _ := net.ParseCIDR(r.primaryAddress())
	return runtime.Attachment{
		NetNSPath:      filepath.Join(netnsDir, r.NetNS),
		IP:             ip.String(),
		HostsPath:      filepath.Join(n.taskDir(r.TaskID), "hosts"),
		ResolvConfPath: filepath.Join(n.taskDir(r.TaskID), "resolv.conf"),
	}
}

func (n *Network) taskDir(id string) string { return filepath.Join(n.dir, "tasks", id) }

func (n *Network) load() error {
	if err := jsonfile.Read(filepath.Join(n.dir, "node.json"), &n.node); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: %w", err)
	}
	n.node.migrate(n.bridge)
	entries, err := os.ReadDir(filepath.Join(n.dir, "tasks"))
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	for _, e := range entries {
		var r taskRecord
		err := jsonfile.Read(filepath.Join(n.taskDir(e.Name()), "record.json"), &r)
		if err != nil || r.TaskID != e.Name() {
			// A directory without a readable record holds files only
			// (the record is written first): Prune removes it.
			n.tasks[e.Name()] = &taskRecord{TaskID: e.Name()}
			continue
		}
		r.migrate()
		n.tasks[r.TaskID] = &r
	}
	n.indexLocked()
	return nil
}

// indexLocked rebuilds byAddr from the records and tells OnTasksChanged's
// function when it changed; mu must be held.
func (n *Network) indexLocked() {
	m := make(map[netip.Addr]TaskAddr, len(n.tasks))
	for _, r := range n.tasks {
		nets := make([]string, len(r.Links))
		for i, l := range r.Links {
			nets[i] = l.Network
		}
		for _, l := range r.Links {
			if p, err := netip.ParsePrefix(l.Address); err == nil {
				m[p.Addr()] = TaskAddr{Network: l.Network, Networks: nets}
			}
		}
	}
	if old := n.byAddr.Load(); old != nil && maps.EqualFunc(*old, m, func(a, b TaskAddr) bool {
		return a.Network == b.Network && slices.Equal(a.Networks, b.Networks)
	}) {
		return
	}
	n.byAddr.Store(&m)
	if f := n.onTasks.Load(); f != nil {
		(*f)(m)
	}
}

// NetworksOf returns the networks of this node's task that holds addr (its
// primary network first); false for an address of no task here. The
// node's DNS servers scope their answers with it.
func (n *Network) NetworksOf(addr netip.Addr) ([]string, bool) {
	if m := n.byAddr.Load(); m != nil {
		a, ok := (*m)[addr]
		return a.Networks, ok
	}
	return nil, false
}

// OnTasksChanged has f told the addresses of the node's tasks now and
// after every change (the map is not modified afterwards). f is called
// with the network's lock held: it must not block or call the Network.
func (n *Network) OnTasksChanged(f func(map[netip.Addr]TaskAddr)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.onTasks.Store(&f)
	if m := n.byAddr.Load(); m != nil {
		f(*m)
	}
}

func (n *Network) saveTask(r *taskRecord) error {
	if err := os.MkdirAll(n.taskDir(r.TaskID), 0o755); err != nil {
		return err
	}
	return jsonfile.Write(filepath.Join(n.taskDir(r.TaskID), "record.json"), r, 0o644)
}

// Attach implements runtime.Network. The task gets one interface per
// network, eth0 on the primary one (Task.Networks[0], or the default
// network with Task.Address for a task without Networks). A network not
// made here yet is waited for, up to networkWait.
func (n *Network) Attach(ctx context.Context, t *shoalpb.Task) (runtime.Attachment, error) {
	if err := ctx.Err(); err != nil {
		return runtime.Attachment{}, err
	}
	id := t.GetId()
	if err := checkTaskID(id); err != nil {
		return runtime.Attachment{}, err
	}
	tns, err := taskNetworks(t)
	if err != nil {
		return runtime.Attachment{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock() // dropped while the namespace is built
	defer n.indexLocked()
	nets, err := n.waitNetworksLocked(ctx, id, tns)
	if err != nil {
		return runtime.Attachment{}, err
	}
	var links []taskLink
	var plans []linkPlan
	for i, tn := range tns {
		nr := nets[i]
		addr, err := taskAddress(id, tn, nr.slice())
		if err != nil {
			return runtime.Attachment{}, err
		}
		l := taskLink{Network: nr.ID, Veth: n.vethName(id), Address: addr.String()}
		p := linkPlan{bridge: nr.Bridge, addr: addr, gw: gatewayOf(nr.slice())}
		if i > 0 {
			l.Veth = n.extraVethName(id, nr.ID)
			p.route = nr.subnet()
		}
		links = append(links, l)
		plans = append(plans, p)
	}
	ports, err := n.portRules(t)
	if err != nil {
		return runtime.Attachment{}, err
	}
	if old := n.tasks[id]; old != nil {
		// A record outlives a reboot, which empties /run/netns: check
		// the namespace and veths are still there.
		if old.Complete && slices.Equal(old.Links, links) && slices.Equal(old.Ports, ports) && alive(old) {
			return old.attachment(n), nil
		}
		// Half made by a crashed Attach, or the task changed: start over.
		if err := n.teardownLocked(old); err != nil {
			return runtime.Attachment{}, err
		}
	}
	r := &taskRecord{
		TaskID: id,
		NetNS:  "shoal-" + n.nodeTag + "-" + id,
		Links:  links,
		Ports:  ports,
	}
	if err := n.saveTask(r); err != nil {
		return runtime.Attachment{}, fmt.Errorf("network: attach task %s: %w", id, err)
	}
	n.tasks[id] = r
	// The record holds the task's ports against other tasks; the slow
	// part runs unlocked.
	n.busy[id] = true
	n.mu.Unlock()
	berr := n.build(t, r, plans)
	if berr != nil {
		if terr := n.teardown(r); terr != nil {
			n.log.Warn("undo failed attach", "task", id, "err", terr)
			berr = errors.Join(berr, terr)
		}
	}
	n.mu.Lock()
	n.notBusyLocked(id)
	if berr != nil {
		if _, err := os.Stat(n.taskDir(id)); errors.Is(err, os.ErrNotExist) {
			delete(n.tasks, id)
		}
		return runtime.Attachment{}, fmt.Errorf("network: attach task %s: %w", id, berr)
	}
	r.Complete = true
	if err := n.saveTask(r); err != nil {
		return runtime.Attachment{}, fmt.Errorf("network: attach task %s: %w", id, err)
	}
	return r.attachment(n), nil
}

// waitTaskLocked waits, with mu held, until no Attach or Detach of the task
// runs.
func (n *Network) waitTaskLocked(id string) {
	for n.busy[id] {
		n.idle.Wait()
	}
}

// waitIdleLocked waits, with mu held, until no Attach or Detach runs.
func (n *Network) waitIdleLocked() {
	for len(n.busy) > 0 {
		n.idle.Wait()
	}
}

func (n *Network) notBusyLocked(id string) {
	delete(n.busy, id)
	n.idle.Broadcast()
}

func (n *Network) build(t *shoalpb.Task, r *taskRecord, plans []linkPlan) error {
	if err := n.makeNamespace(r, plans); err != nil {
		return err
	}
	for _, p := range r.Ports {
		// Append, not AppendUnique: teardownLocked removed any earlier copy,
		// and each iptables run costs ~15 ms on the nft backend.
		if err := n.ipt.Append("nat", chainPorts, n.portSpec(r, p)...); err != nil {
			return fmt.Errorf("publish port %d/%s: %w", p.Published, p.Protocol, err)
		}
	}
	return n.writeFiles(t, r, plans[0].gw)
}

// Detach implements runtime.Network.
func (n *Network) Detach(ctx context.Context, taskID string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.indexLocked()
	n.waitTaskLocked(taskID)
	r := n.tasks[taskID]
	if r == nil {
		return nil
	}
	// Deleting the veth alone takes ~30 ms of kernel work: done unlocked,
	// but before Detach returns, so the address is free when it does.
	n.busy[taskID] = true
	n.mu.Unlock()
	err := n.teardown(r)
	n.mu.Lock()
	n.notBusyLocked(taskID)
	if err != nil {
		return fmt.Errorf("network: detach task %s: %w", taskID, err)
	}
	delete(n.tasks, taskID)
	if err := n.collectLocked(); err != nil {
		// The task is detached; the next Detach or Prune tries again.
		n.log.Warn("removing a network after its last task", "err", err)
	}
	return nil
}

// teardownLocked is teardown, then forgets the record.
func (n *Network) teardownLocked(r *taskRecord) error {
	if err := n.teardown(r); err != nil {
		return err
	}
	delete(n.tasks, r.TaskID)
	return nil
}

// teardown removes whatever of r exists, then its directory with the
// record. Every step tolerates the thing being gone already; the record is
// kept if a step fails so that a later Detach or Prune tries again. It
// touches no field of n but the immutable ones, so it needs no lock.
func (n *Network) teardown(r *taskRecord) error {
	var errs []error
	for _, p := range r.Ports {
		if err := deleteRule(n.ipt, "nat", chainPorts, n.portSpec(r, p)); err != nil {
			errs = append(errs, fmt.Errorf("unpublish port %d/%s: %w", p.Published, p.Protocol, err))
		}
	}
	for _, l := range r.Links {
		if l.Veth == "" {
			continue
		}
		if err := deleteLink(l.Veth); err != nil {
			errs = append(errs, err)
		}
	}
	if r.NetNS != "" {
		if err := deleteNamespace(r.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(n.taskDir(r.TaskID))
}

// Prune removes what this node made for every task not in keep: recorded
// namespaces, veths and files, veths on any of its bridges that belong to
// no kept task, port rules of this node naming a task not kept, and the
// networks SetNetworks dropped whose last task this was. The agent
// calls it at start with the tasks it still runs, to clean up after a crash.
func (n *Network) Prune(ctx context.Context, keep map[string]bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.indexLocked()
	n.waitIdleLocked()
	var errs []error
	for id, r := range n.tasks {
		if keep[id] {
			continue
		}
		if err := n.teardownLocked(r); err != nil {
			errs = append(errs, fmt.Errorf("task %s: %w", id, err))
		}
	}
	keepVeth := map[string]bool{}
	for id := range keep {
		keepVeth[n.vethName(id)] = true
		if r := n.tasks[id]; r != nil {
			for _, l := range r.Links {
				keepVeth[l.Veth] = true
			}
		}
	}
	bridges := map[string]bool{n.bridge: true}
	for _, nr := range n.node.Networks {
		bridges[nr.Bridge] = true
	}
	for b := range bridges {
		if err := n.pruneVeths(b, keepVeth); err != nil {
			errs = append(errs, err)
		}
	}
	if err := n.prunePortRules(keep); err != nil {
		errs = append(errs, err)
	}
	if err := n.collectLocked(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: prune: %w", err)
	}
	return nil
}

// Destroy removes everything this node made: every task's namespace,
// veths, rules and files, the peer routes, every network's rules and
// bridge. The shared chains and their jumps stay, as another node on the
// same host may use them.
func (n *Network) Destroy(ctx context.Context) error {
	if err := n.Prune(ctx, nil); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.waitIdleLocked()
	return n.destroyNodeLocked()
}

// checkTaskID refuses IDs that could escape a file name or a comment.
func checkTaskID(id string) error {
	if id == "" {
		return errors.New("network: task has no ID")
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || len(id) > 64 {
			return fmt.Errorf("network: task ID %q: only letters, digits, '-', '_' and '.' (at most 64) are allowed", id)
		}
	}
	if id == "." || id == ".." {
		return fmt.Errorf("network: task ID %q is not allowed", id)
	}
	return nil
}

// portRules lists t's host-mode published ports, refusing one another task
// of this node already publishes.
func (n *Network) portRules(t *shoalpb.Task) ([]portRule, error) {
	var out []portRule
	for _, p := range t.GetSpec().GetPorts() {
		if p.GetMode() != shoalpb.PublishMode_PUBLISH_MODE_HOST || p.GetPublishedPort() == 0 {
			continue
		}
		proto := strings.ToLower(p.GetProtocol())
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("network: task %s port %d: protocol %q is neither tcp nor udp", t.GetId(), p.GetPublishedPort(), p.GetProtocol())
		}
		if p.GetPublishedPort() > 65535 || p.GetTargetPort() == 0 || p.GetTargetPort() > 65535 {
			return nil, fmt.Errorf("network: task %s port %d:%d: ports must be 1-65535", t.GetId(), p.GetPublishedPort(), p.GetTargetPort())
		}
		pr := portRule{Protocol: proto, Published: p.GetPublishedPort(), Target: p.GetTargetPort()}
		for id, r := range n.tasks {
			if id == t.GetId() {
				continue
			}
			for _, q := range r.Ports {
				if q.Protocol == pr.Protocol && q.Published == pr.Published {
					return nil, fmt.Errorf("%w: %d/%s is published by task %s", ErrPortInUse, pr.Published, pr.Protocol, id)
				}
			}
		}
		out = append(out, pr)
	}
	return out, nil
}

// vethName is the host side's name: 15 characters at most, unique per node
// and task.
func (n *Network) vethName(taskID string) string {
	sum := sha256.Sum256([]byte(n.nodeTag + "/" + taskID))
	return vethPrefix + hex.EncodeToString(sum[:6])
}

const vethPrefix = "shv"

// Tag is the 8 hex digits that name this node's namespaces, veths and other
// kernel objects, unique per data dir on a machine.
func (n *Network) Tag() string { return n.nodeTag }
