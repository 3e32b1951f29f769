package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/internal/ids"
	"shoal/manager"
	"shoal/manager/allocator"
	"shoal/manager/ca"
	"shoal/manager/controlapi"
	"shoal/manager/dispatcher"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// bootstrap holds the objects `shoal init` writes once the new Raft group has
// elected this node.
type bootstrap struct {
	cluster *shoalpb.Cluster
	node    *shoalpb.Node
}

// prepareInit creates the cluster's identity in memory; nothing is written to
// the data dir until Raft has committed the cluster (see writeBootstrap).
func (n *Node) prepareInit() error {
	if err := checkFresh(n.cfg.DataDir); err != nil {
		return err
	}
	adv, lis, err := resolveAddrs(n.cfg.AdvertiseAddr, n.cfg.ListenAddr)
	if err != nil {
		return err
	}
	expiry := n.cfg.CertExpiry
	if expiry == 0 {
		expiry = controlapi.DefaultCertExpiry
	}
	if expiry < 30*time.Second {
		return fmt.Errorf("--cert-expiry: %s is too short; use at least 30s (default %s)", expiry, controlapi.DefaultCertExpiry)
	}
	heartbeat := n.cfg.HeartbeatPeriod
	if heartbeat == 0 {
		heartbeat = dispatcher.DefaultHeartbeatPeriod
	}
	if heartbeat < 100*time.Millisecond {
		return fmt.Errorf("--heartbeat-period: %s is too short; use at least 100ms", heartbeat)
	}
	taskPool, subnetBits := n.cfg.TaskPool, n.cfg.NodeSubnetBits
	if taskPool == "" {
		taskPool = allocator.DefaultTaskPool
	}
	if subnetBits == 0 {
		subnetBits = allocator.DefaultNodeSubnetBits
	}
	pool, err := allocator.ParsePool(taskPool, subnetBits, allocator.FlagNames)
	if err != nil {
		return err
	}
	networkPool := n.cfg.NetworkPool
	if networkPool == "" {
		networkPool = allocator.DefaultNetworkPool
	}
	netPool, err := allocator.NetworkPoolOf(&shoalpb.ClusterSpec{TaskPool: pool.String(), NodeSubnetBits: uint32(pool.SubnetBits), NetworkPool: networkPool})
	if err != nil {
		return fmt.Errorf("--network-pool: %w", err)
	}

	clusterID, nodeID := ids.New(), ids.New()
	now := time.Now()
	root, err := ca.NewRootCA(clusterID, now)
	if err != nil {
		return err
	}
	keyPEM, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		return err
	}
	certPEM, err := root.IssueCertificate(csr, ca.Identity{NodeID: nodeID, ClusterID: clusterID, Role: ca.RoleManager}, now, expiry)
	if err != nil {
		return err
	}
	creds, err := ca.NewCredentials(certPEM, keyPEM, root.CertPEM)
	if err != nil {
		return err
	}
	workerToken, err := ca.NewToken(root.Fingerprint())
	if err != nil {
		return err
	}
	managerToken, err := ca.NewToken(root.Fingerprint())
	if err != nil {
		return err
	}
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		return err
	}
	meta := &shoalpb.Meta{CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now)}
	n.creds = creds
	n.id = &Identity{
		NodeID: nodeID, ClusterID: clusterID, Role: roleManager,
		AdvertiseAddr: adv, ListenAddr: lis, GossipPort: n.cfg.GossipPort,
		GossipKey: gossipKey, Runtime: n.cfg.Runtime,
	}
	n.bootstrap = &bootstrap{
		cluster: &shoalpb.Cluster{
			Id:   clusterID,
			Meta: meta,
			Spec: &shoalpb.ClusterSpec{
				Name:                  "default",
				NodeCertExpirySeconds: int64(expiry / time.Second),
				HeartbeatPeriodMs:     heartbeat.Milliseconds(),
				TaskHistoryLimit:      5,
				TaskPool:              pool.String(),
				NodeSubnetBits:        uint32(pool.SubnetBits),
				NetworkPool:           netPool.String(),
			},
			RootCa:     &shoalpb.RootCA{CertPem: root.CertPEM, KeyPem: root.KeyPEM, Fingerprint: root.Fingerprint()},
			JoinTokens: &shoalpb.JoinTokens{Worker: workerToken, Manager: managerToken},
			GossipKey:  gossipKey,
		},
		node: &shoalpb.Node{
			Id:          nodeID,
			Meta:        meta,
			Spec:        &shoalpb.NodeSpec{DesiredRole: shoalpb.NodeRole_NODE_ROLE_MANAGER},
			Description: n.description(),
			Status:      &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_UNKNOWN, Addr: adv, UpdatedAt: timestamppb.New(now)},
			Role:        shoalpb.NodeRole_NODE_ROLE_MANAGER,
			Manager:     &shoalpb.ManagerInfo{RaftAddr: manager.RaftAddr(adv), ApiAddr: adv},
		},
	}
	return nil
}

// writeBootstrap waits for the fresh single-node Raft group to elect this
// node, commits the cluster and node objects, then writes the node's files.
func (n *Node) writeBootstrap(ctx context.Context, store *state.Store) error {
	deadline := time.Now().Add(15 * time.Second)
	for !store.IsLeader() {
		if time.Now().After(deadline) {
			return fmt.Errorf("the new Raft group did not elect this node within 15s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	b := n.bootstrap
	_, err := store.Propose(ctx,
		&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Cluster{Cluster: b.cluster}},
		&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Node{Node: b.node}},
	)
	if err != nil {
		return fmt.Errorf("write the new cluster: %w", err)
	}
	if err := n.saveCreds(); err != nil {
		return err
	}
	return n.id.save(n.cfg.DataDir)
}

func (n *Node) description() *shoalpb.NodeDescription {
	host, _ := os.Hostname()
	return &shoalpb.NodeDescription{
		Hostname:    host,
		Os:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		NanoCpus:    int64(runtime.NumCPU()) * 1e9,
		MemoryBytes: totalMemory(),
		Version:     n.cfg.Version,
		Runtime:     n.cfg.Runtime,
	}
}
