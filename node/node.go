// Package node is the shoal daemon: it owns the data dir, the listeners and
// the node's identity, and runs the components of the node's role — every
// node runs gossip and an agent; a manager also runs the replicated store and
// the manager services. When the node's role changes (promote/demote) the
// components are torn down and started again in the new role.
//
// See docs/control-plane.md for ports, files and the trust model.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"shoal/manager/ca"
	"shoal/manager/state"
	"shoal/membership"
	shoalpb "shoal/proto"
	"shoal/worker"
)

// Mode says how Run finds or creates the node.
type Mode int

const (
	// ModeInit creates a new cluster with this node as its first manager.
	ModeInit Mode = iota
	// ModeJoin joins an existing cluster with a token.
	ModeJoin
	// ModeRestart starts the node held in the data dir.
	ModeRestart
)

// Config is everything the daemon's flags set.
type Config struct {
	DataDir       string
	AdvertiseAddr string // IP or IP:PORT; default: first non-loopback IPv4, port 2377
	ListenAddr    string // IP or IP:PORT; default: the advertise address
	GossipPort    int    // default 7946
	// Runtime is "process" (the default) or "containerd"; on a restart,
	// empty keeps the runtime the node was started with.
	Runtime string
	// ContainerdAddress is the socket of a containerd to use instead of the
	// one the containerd runtime starts itself.
	ContainerdAddress string
	// DNSUpstreams are the resolvers ("ip:port") the node's DNS servers
	// forward names outside the cluster to; empty: those of the host's
	// /etc/resolv.conf.
	DNSUpstreams []string
	Version      string

	// Init only.
	CertExpiry      time.Duration
	HeartbeatPeriod time.Duration
	// TaskPool and NodeSubnetBits are where task addresses come from
	// (ClusterSpec.task_pool, node_subnet_bits); empty and 0 mean the
	// defaults of manager/allocator. They cannot change after init.
	TaskPool       string
	NodeSubnetBits uint32
	// NetworkPool is where networks created without --subnet take theirs
	// from (ClusterSpec.network_pool); empty means allocator's default.
	NetworkPool string

	// Join only.
	JoinToken string
	JoinAddr  string

	// Restart only.
	ForceNewCluster bool

	// Raft tuning, for tests; 0 keeps the defaults.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration

	Logger *slog.Logger
	// OnReady is called once the node serves, with its join tokens on managers.
	OnReady func(Ready)
}

// Ready describes a node that has started.
type Ready struct {
	NodeID, ClusterID, Role, Addr string
	// Tokens are set on managers.
	WorkerToken, ManagerToken string
}

// ErrLeft ends Run after `shoal leave`.
var errLeft = errors.New("node left the cluster")

// Node is a running daemon.
type Node struct {
	cfg   Config
	log   *slog.Logger
	creds *ca.Credentials

	mu        sync.Mutex
	id        *Identity
	agent     *worker.Agent
	store     *state.Store
	gossip    *membership.Gossip
	bootstrap *bootstrap // set by init until the cluster objects are written
	leave     chan struct{}
	tasks     *taskRuntime
}

// Run starts the node and serves until ctx ends or the node leaves.
func Run(ctx context.Context, cfg Config, mode Mode) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GossipPort == 0 {
		cfg.GossipPort = DefaultGossipPort
	}
	if cfg.Runtime == "" && mode != ModeRestart {
		cfg.Runtime = "process"
	}
	switch cfg.Runtime {
	case "process", "containerd", "":
	default:
		return fmt.Errorf("--runtime: %q is not a runtime; use containerd or process", cfg.Runtime)
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	cfg.DataDir = abs
	n := &Node{cfg: cfg, log: cfg.Logger, leave: make(chan struct{}, 1)}
	switch mode {
	case ModeInit:
		err = n.prepareInit()
	case ModeJoin:
		err = n.join(ctx)
	default:
		err = n.loadExisting()
	}
	if err != nil {
		return err
	}
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	if n.tasks, err = n.openRuntime(ctx, fail); err != nil {
		return err
	}
	defer func() { n.tasks.close() }()
	for {
		err := n.runRole(ctx)
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		var rc *worker.RoleChange
		switch {
		case errors.As(err, &rc):
			if err := n.switchRole(rc.Role); err != nil {
				return err
			}
			continue
		case errors.Is(err, errLeft):
			n.log.Info("node left the cluster; clearing its data dir")
			n.tasks.close()
			n.tasks.close = func() {}
			if err := purge(context.WithoutCancel(ctx), n.cfg.DataDir); err != nil {
				n.log.Warn("removing the node's containers and task networks", "err", err)
			}
			return clearState(n.cfg.DataDir)
		}
		return err
	}
}

func (n *Node) loadExisting() error {
	id, err := loadIdentity(n.cfg.DataDir)
	if err != nil {
		return err
	}
	creds, err := loadCreds(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if creds.Identity().NodeID != id.NodeID || creds.Identity().ClusterID != id.ClusterID {
		return fmt.Errorf("data dir %s: the certificate (node %s, cluster %s) does not belong to this node (%s, cluster %s); the data dir is damaged",
			n.cfg.DataDir, creds.Identity().NodeID, creds.Identity().ClusterID, id.NodeID, id.ClusterID)
	}
	if n.cfg.ForceNewCluster && id.Role != roleManager {
		return errors.New("--force-new-cluster: this node is a worker; run it on a surviving manager")
	}
	if n.cfg.Runtime != "" && n.cfg.Runtime != id.Runtime {
		id.Runtime = n.cfg.Runtime
		if err := id.save(n.cfg.DataDir); err != nil {
			return err
		}
	}
	n.id, n.creds = id, creds
	return nil
}

const (
	roleManager = "manager"
	roleWorker  = "worker"
)

// switchRole records a new role after the certificate changed.
func (n *Node) switchRole(role shoalpb.NodeRole) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	name := roleWorker
	if role == shoalpb.NodeRole_NODE_ROLE_MANAGER {
		name = roleManager
	}
	n.log.Info("switching role", "from", n.id.Role, "to", name)
	n.id.Role = name
	if err := n.id.save(n.cfg.DataDir); err != nil {
		return err
	}
	if name == roleWorker {
		return os.RemoveAll(filepath.Join(n.cfg.DataDir, raftDir))
	}
	return nil
}

// identity returns a copy of the identity.
func (n *Node) identity() Identity {
	n.mu.Lock()
	defer n.mu.Unlock()
	return *n.id
}

// managerAddrs lists manager API addresses to try: the ones remembered, then
// any gossip knows of.
func (n *Node) managerAddrs() []string {
	id := n.identity()
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if id.Role == roleManager {
		add(id.AdvertiseAddr)
	}
	for _, m := range id.Managers {
		add(m.APIAddr)
	}
	n.mu.Lock()
	g := n.gossip
	n.mu.Unlock()
	if g != nil {
		for _, m := range g.Managers() {
			add(m.Meta.APIAddr)
		}
	}
	return out
}

// rememberManagers persists the manager list when it changed.
func (n *Node) rememberManagers(ms []*shoalpb.ManagerAddr) {
	list := make([]ManagerAddr, 0, len(ms))
	for _, m := range ms {
		list = append(list, ManagerAddr{NodeID: m.NodeId, APIAddr: m.ApiAddr, GossipAddr: m.GossipAddr})
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if fmt.Sprint(list) == fmt.Sprint(n.id.Managers) {
		return
	}
	n.id.Managers = list
	if err := n.id.save(n.cfg.DataDir); err != nil {
		n.log.Warn("saving the manager list failed", "err", err)
	}
}

func (n *Node) saveCreds() error { return n.creds.Save(filepath.Join(n.cfg.DataDir, certsDir)) }
