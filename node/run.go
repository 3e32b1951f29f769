package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"shoal/manager"
	"shoal/manager/ca"
	"shoal/manager/state"
	"shoal/membership"
	shoalpb "shoal/proto"
	"shoal/worker"
	"shoal/worker/exec"
	"shoal/worker/images"
	"shoal/worker/volumes"
)

// leaveStopTimeout bounds how long a node that leaves waits for its tasks to
// stop (each gets its stop signal, then SIGKILL after its grace period).
const leaveStopTimeout = time.Minute

// clusterReadBuffer is the read buffer of each connection to the cluster
// port; gRPC's default is 32 KiB.
const clusterReadBuffer = 8 << 10

// runRole starts every component of the node's current role, serves until
// ctx ends, the node leaves, or the agent reports a role change, and tears it
// all down again.
func (n *Node) runRole(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := n.identity()
	isManager := id.Role == roleManager

	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()

	clusterLn, err := listenTCP("cluster port", id.ListenAddr)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { clusterLn.Close() })
	localLn, err := listenLocal(filepath.Join(n.cfg.DataDir, socketFile))
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { localLn.Close() })

	gossip, err := membership.New(membership.Config{
		NodeID:   id.NodeID,
		BindAddr: hostOf(id.AdvertiseAddr),
		Port:     id.GossipPort,
		Key:      id.GossipKey,
		Meta:     membership.Meta{Role: id.Role, APIAddr: id.AdvertiseAddr},
		Logger:   n.log,
	})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	n.setGossip(gossip)
	left := false
	cleanup = append(cleanup, func() {
		n.setGossip(nil)
		if err := gossip.Leave(time.Second); err != nil && !left {
			n.log.Debug("gossip leave", "err", err)
		}
		_ = gossip.Shutdown()
	})

	opts := manager.AuthorizationOptions(nil)
	var mgr *manager.Manager
	var store *state.Store
	if isManager {
		var closeStore func() error
		store, closeStore, err = n.openStore(id)
		if err != nil {
			return err
		}
		n.setStore(store)
		cleanup = append(cleanup, func() {
			n.setStore(nil)
			if err := closeStore(); err != nil {
				n.log.Warn("closing the store", "err", err)
			}
		})
		if n.bootstrap != nil {
			if err := n.writeBootstrap(ctx, store); err != nil {
				_ = closeStore()
				_ = clearState(n.cfg.DataDir)
				return err
			}
			n.bootstrap = nil
		}
		mgr = manager.New(manager.Config{NodeID: id.NodeID, DataDir: n.cfg.DataDir, Store: store, Gossip: gossip, Creds: n.creds, Logger: n.log})
		opts = mgr.AuthorizationOptions()
	}

	// A manager holds a connection per node of the cluster, mostly idle
	// between heartbeats: each gets a small read buffer and lends its
	// write buffer back after every flush, instead of 32 KiB of each for
	// good (about 60 MiB of a leader's heap at 1,000 nodes).
	opts = append(opts, grpc.ReadBufferSize(clusterReadBuffer), grpc.SharedWriteBuffer(true))
	clusterSrv := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(n.creds.ServerTLS())))...)
	localSrv := grpc.NewServer()
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(clusterSrv, healthSrv)
	shoalpb.RegisterNodeServiceServer(localSrv, &nodeService{n: n})
	executor := exec.New(exec.Config{DataDir: n.cfg.DataDir, NodeID: id.NodeID, Runtime: n.tasks.rt, Logger: n.log,
		DeregisterDelay: n.tasks.deregisterDelay()})
	shoalpb.RegisterTaskLogsServer(clusterSrv, exec.NewLogServer(executor))
	imagesCfg := images.Config{NodeID: id.NodeID, Store: n.tasks.images, Logger: n.log,
		// Peers are workers as well as managers: accept either certificate.
		Dial: func(ctx context.Context, addr string) (*grpc.ClientConn, error) {
			return n.dialNode(ctx, addr, ca.RoleManager, ca.RoleWorker)
		}}
	if store != nil {
		imagesCfg.Peers = imagePeers(store)
	}
	imagesSrv := images.NewServer(imagesCfg)
	shoalpb.RegisterImagesServer(clusterSrv, imagesSrv)
	shoalpb.RegisterImagesServer(localSrv, imagesSrv)
	shoalpb.RegisterVolumesServer(localSrv, volumes.NewServer(n.tasks.volumes, executor.VolumesInUse))
	dnsSrv := n.dnsDebug(id, store)
	shoalpb.RegisterNodeDNSServer(clusterSrv, dnsSrv)
	shoalpb.RegisterNodeDNSServer(localSrv, dnsSrv)
	if mgr != nil {
		mgr.RegisterCluster(clusterSrv)
		mgr.RegisterLocal(localSrv)
		reflection.Register(clusterSrv)
	}
	reflection.Register(localSrv)
	go func() { _ = clusterSrv.Serve(clusterLn) }()
	go func() { _ = localSrv.Serve(localLn) }()
	cleanup = append(cleanup, func() {
		clusterSrv.Stop()
		stopGracefully(localSrv, 2*time.Second)
	})

	// The loops below end with ctx; the role's teardown waits for them, so
	// the next role never runs a second executor, agent or manager beside
	// the old ones.
	errs := make(chan error, 3)
	var loops sync.WaitGroup
	cleanup = append(cleanup, func() {
		cancel()
		loops.Wait()
	})
	loops.Go(func() {
		if err := executor.Run(ctx); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("executor: %w", err)
		}
	})
	if mgr != nil {
		loops.Go(func() { errs <- mgr.Run(ctx) })
		go n.joinRaft(ctx, store, id)
	}
	if peers := n.gossipPeers(); len(peers) > 0 {
		if _, err := gossip.Join(peers); err != nil {
			n.log.Warn("gossip: no peer answered yet; retrying in the background", "err", err)
		}
	}

	agent := worker.New(worker.Config{
		Addr:        id.AdvertiseAddr,
		Description: n.description(),
		Creds:       n.creds,
		Managers:    n.managerAddrs,
		OnManagers:  n.rememberManagers,
		SaveCreds:   n.saveCreds,
		OnNetwork:   n.onNetwork(n.tasks),
		OnEndpoints: n.tasks.onEndpoints(),
		PortErrors:  n.tasks.portErrors(),
		Executor:    executor,
		Logger:      n.log,
	})
	n.setAgent(agent)
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	agentDone := make(chan struct{})
	loops.Go(func() {
		defer close(agentDone)
		errs <- agent.Run(agentCtx)
	})

	n.ready(id)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.leave:
		left = true
		// A node that leaves takes its tasks with it; the agent goes first
		// so no assignment brings them back.
		stopAgent()
		<-agentDone
		stopCtx, cancelStop := context.WithTimeout(ctx, leaveStopTimeout)
		defer cancelStop()
		if err := executor.StopAll(stopCtx); err != nil {
			n.log.Warn("leaving with tasks still running", "err", err)
		}
		return errLeft
	case err := <-errs:
		if err == nil {
			return ctx.Err()
		}
		return err
	}
}

// openStore opens this manager's Raft store; closeStore closes it and the
// connections it forwards writes on.
func (n *Node) openStore(id Identity) (store *state.Store, closeStore func() error, err error) {
	raftAddr := manager.RaftAddr(id.ListenAddr)
	ln, err := listenTCP("raft port", raftAddr)
	if err != nil {
		return nil, nil, err
	}
	server, client := n.creds.PeerTLS(ca.RoleManager)
	layer, err := newTLSStreamLayer(ln, manager.RaftAddr(id.AdvertiseAddr), server, client)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	forwarder, closeForwarder := manager.Forwarder(n.creds)
	store, err = state.Open(state.Config{
		NodeID:            id.NodeID,
		Dir:               filepath.Join(n.cfg.DataDir, raftDir),
		Addr:              manager.RaftAddr(id.AdvertiseAddr),
		StreamLayer:       layer,
		Bootstrap:         n.bootstrap != nil,
		ForceNewCluster:   n.cfg.ForceNewCluster,
		Forwarder:         forwarder,
		Logger:            n.log,
		SnapshotThreshold: n.cfg.SnapshotThreshold,
		TrailingLogs:      n.cfg.TrailingLogs,
		SnapshotInterval:  n.cfg.SnapshotInterval,
	})
	if err != nil {
		ln.Close()
		closeForwarder()
		return nil, nil, fmt.Errorf("open the raft store: %w", err)
	}
	n.cfg.ForceNewCluster = false
	return store, func() error {
		defer closeForwarder()
		return store.Close()
	}, nil
}

// joinRaft asks the leader to add this manager to Raft until it is a member.
// A manager that is already in the configuration does nothing.
func (n *Node) joinRaft(ctx context.Context, store *state.Store, id Identity) {
	if members, err := store.Members(); err == nil {
		for _, m := range members {
			if m.ID == id.NodeID {
				return
			}
		}
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		addrs := n.managerAddrs()
		for _, addr := range addrs {
			if addr == id.AdvertiseAddr {
				continue
			}
			if err := n.askJoin(ctx, addr, id); err != nil {
				n.log.Debug("raft join", "manager", addr, "err", err)
				continue
			}
			n.log.Info("joined raft", "via", addr)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (n *Node) askJoin(ctx context.Context, addr string, id Identity) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(n.creds.ClientTLS(ca.RoleManager))))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = shoalpb.NewRaftMembershipClient(conn).Join(ctx, &shoalpb.JoinRaftRequest{NodeId: id.NodeID, RaftAddr: manager.RaftAddr(id.AdvertiseAddr)})
	return err
}

// gossipPeers are the gossip addresses of the managers this node knows.
func (n *Node) gossipPeers() []string {
	id := n.identity()
	var out []string
	for _, m := range id.Managers {
		if m.NodeID == id.NodeID {
			continue
		}
		if m.GossipAddr != "" {
			out = append(out, m.GossipAddr)
		} else if m.APIAddr != "" {
			out = append(out, net.JoinHostPort(hostOf(m.APIAddr), strconv.Itoa(DefaultGossipPort)))
		}
	}
	return out
}

func (n *Node) ready(id Identity) {
	if n.cfg.OnReady == nil {
		return
	}
	r := Ready{NodeID: id.NodeID, ClusterID: id.ClusterID, Role: id.Role, Addr: id.AdvertiseAddr}
	if store := n.currentStore(); store != nil {
		store.View(func(tx state.ReadTx) {
			if c := tx.Cluster(); c != nil {
				r.WorkerToken, r.ManagerToken = c.JoinTokens.Worker, c.JoinTokens.Manager
			}
		})
	}
	n.cfg.OnReady(r)
}

// listenLocal binds the local API socket (mode 0600). A socket file left by a
// dead daemon is replaced; one with a live daemon behind it is an error.
func listenLocal(path string) (net.Listener, error) {
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("a shoal daemon is already running on %s; stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func stopGracefully(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
	}
}

func (n *Node) setGossip(g *membership.Gossip) { n.mu.Lock(); n.gossip = g; n.mu.Unlock() }
func (n *Node) setStore(s *state.Store)        { n.mu.Lock(); n.store = s; n.mu.Unlock() }
func (n *Node) setAgent(a *worker.Agent)       { n.mu.Lock(); n.agent = a; n.mu.Unlock() }

func (n *Node) currentStore() *state.Store {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.store
}
