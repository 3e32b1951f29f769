// Package manager assembles what runs on a manager node around the replicated
// store: the control API, the dispatcher, the node CA, the Raft membership
// service, and the leader loops (node liveness and role changes).
//
// The node package owns listeners, the store and gossip; it hands them to New
// and registers the Manager's services on its gRPC servers. Run starts the
// leader loops each time this manager becomes leader (after a Raft barrier)
// and cancels them when leadership is lost.
package manager

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"

	"shoal/manager/ca"
	"shoal/manager/controlapi"
	"shoal/manager/dispatcher"
	"shoal/manager/orchestrator"
	"shoal/manager/state"
	"shoal/membership"
	shoalpb "shoal/proto"
)

// Gossip is what the manager needs of cluster gossip.
type Gossip interface {
	Alive(nodeID string) bool
	Members() []membership.Member
}

// Config wires a Manager.
type Config struct {
	NodeID  string
	DataDir string
	Store   *state.Store
	Gossip  Gossip
	Creds   *ca.Credentials
	Logger  *slog.Logger
}

// Manager is one manager node's services and leader loops.
type Manager struct {
	cfg        Config
	log        *slog.Logger
	peers      *peers // managers
	nodes      *peers // any node, for logs
	control    *controlapi.Server
	dispatcher *dispatcher.Dispatcher
}

// New builds a manager; nothing runs until Run.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "manager"),
		peers: newPeers(cfg.Creds, ca.RoleManager),
		nodes: newPeers(cfg.Creds, ca.RoleManager, ca.RoleWorker),
	}
	m.control = controlapi.New(controlapi.Config{
		Store:    cfg.Store,
		Liveness: cfg.Gossip,
		NodeID:   cfg.NodeID,
		DataDir:  cfg.DataDir,
		Nodes:    m.nodes,
		Logger:   cfg.Logger,
	})
	m.dispatcher = dispatcher.New(dispatcher.Config{Store: cfg.Store, Cluster: m, Logger: cfg.Logger})
	return m
}

// Forwarder returns the state.Forwarder that sends followers' writes to the
// leader over gRPC, and the function that closes its connections once the
// store it was given to (by the node package, to state.Open) is closed.
func Forwarder(creds *ca.Credentials) (state.Forwarder, func()) {
	p := newPeers(creds, ca.RoleManager)
	return &forwarder{peers: p}, p.close
}

// RegisterCluster registers the services served on the cluster port (mutual
// TLS). Use Authorize as the server's interceptors.
func (m *Manager) RegisterCluster(s *grpc.Server) {
	shoalpb.RegisterControlServiceServer(s, m.control)
	shoalpb.RegisterDispatcherServer(s, m.dispatcher)
	shoalpb.RegisterNodeCAServer(s, &nodeCA{m: m})
	shoalpb.RegisterRaftMembershipServer(s, &raftMembership{m: m})
}

// RegisterLocal registers the services served on the local unix socket.
func (m *Manager) RegisterLocal(s *grpc.Server) {
	shoalpb.RegisterControlServiceServer(s, m.control)
}

// Run waits for leadership and runs the leader loops while it lasts.
func (m *Manager) Run(ctx context.Context) error {
	defer m.peers.close()
	defer m.nodes.close()
	changes := m.cfg.Store.LeaderChanges()
	var cancel context.CancelFunc = func() {}
	done := make(chan struct{})
	close(done)
	start := func() {
		var leaderCtx context.Context
		leaderCtx, cancel = context.WithCancel(ctx)
		done = make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			m.lead(leaderCtx)
		}(done)
	}
	if m.cfg.Store.IsLeader() {
		start()
	}
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-done
			return nil
		case leader := <-changes:
			cancel()
			<-done
			if leader {
				start()
			}
		}
	}
}

// lead runs every leader loop until ctx ends.
func (m *Manager) lead(ctx context.Context) {
	// The loops read the store, so it must hold every entry committed by
	// earlier leaders first. A failed barrier (a slow disk, a lost quorum)
	// is retried for as long as this node leads.
	for {
		barrierCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := m.cfg.Store.Barrier(barrierCtx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("raft barrier failed after gaining leadership; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	m.log.Info("leading the cluster")
	orch := orchestrator.New(orchestrator.Config{Store: m.cfg.Store, Logger: m.cfg.Logger})
	loops := []func(context.Context) error{m.dispatcher.Run, m.reconcileRoles, orch.Run}
	errs := make(chan error, len(loops))
	for _, loop := range loops {
		go func() { errs <- loop(ctx) }()
	}
	for range loops {
		if err := <-errs; err != nil && ctx.Err() == nil {
			m.log.Error("leader loop failed", "err", err)
		}
	}
}

// LeaderAPIAddr is the leader's gRPC address, "" when no leader is known.
func (m *Manager) LeaderAPIAddr() string {
	_, raftAddr := m.cfg.Store.Leader()
	if raftAddr == "" {
		return ""
	}
	return APIAddr(raftAddr)
}

// Managers lists how to reach every manager in the Raft configuration.
func (m *Manager) Managers() []*shoalpb.ManagerAddr {
	members, err := m.cfg.Store.Members()
	if err != nil {
		return nil
	}
	gossipAddrs := map[string]string{}
	for _, g := range m.cfg.Gossip.Members() {
		gossipAddrs[g.NodeID] = g.Addr
	}
	out := make([]*shoalpb.ManagerAddr, 0, len(members))
	for _, mem := range members {
		out = append(out, &shoalpb.ManagerAddr{
			NodeId:     mem.ID,
			RaftAddr:   mem.Addr,
			ApiAddr:    APIAddr(mem.Addr),
			GossipAddr: gossipAddrs[mem.ID],
		})
	}
	return out
}

// GossipDead reports whether gossip knows the node and considers it gone.
func (m *Manager) GossipDead(nodeID string) bool {
	for _, g := range m.cfg.Gossip.Members() {
		if g.NodeID == nodeID {
			return g.State == membership.StateDead || g.State == membership.StateLeft
		}
	}
	return false
}

// RaftAddr is the Raft address that belongs to a manager's API address: the
// same host, the next port.
func RaftAddr(apiAddr string) string { return shiftPort(apiAddr, 1) }

// APIAddr is the inverse of RaftAddr.
func APIAddr(raftAddr string) string { return shiftPort(raftAddr, -1) }

func shiftPort(addr string, delta int) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(p+delta))
}
