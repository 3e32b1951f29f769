package manager

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/ca"
	"shoal/manager/controlapi"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// nodeCA admits nodes (join) and renews their certificates.
type nodeCA struct {
	shoalpb.UnimplementedNodeCAServer
	m *Manager
}

func (n *nodeCA) GetRootCA(ctx context.Context, _ *shoalpb.GetRootCARequest) (*shoalpb.GetRootCAResponse, error) {
	return &shoalpb.GetRootCAResponse{CertPem: n.m.cfg.Creds.RootPEM()}, nil
}

// signer reads what signing needs from the store.
type signer struct {
	root      *ca.RootCA
	clusterID string
	expiry    time.Duration
	cluster   *shoalpb.Cluster
}

func (n *nodeCA) signer() (*signer, error) {
	var s *signer
	var err error
	n.m.cfg.Store.View(func(tx state.ReadTx) {
		c := tx.Cluster()
		if c == nil {
			err = status.Error(codes.Unavailable, "the cluster is not initialised yet; retry shortly")
			return
		}
		var root *ca.RootCA
		root, err = ca.ParseRootCA(c.RootCa.CertPem, c.RootCa.KeyPem)
		expiry := controlapi.DefaultCertExpiry
		if sec := c.GetSpec().GetNodeCertExpirySeconds(); sec > 0 {
			expiry = time.Duration(sec) * time.Second
		}
		s = &signer{root: root, clusterID: c.Id, expiry: expiry, cluster: c}
	})
	return s, err
}

func (n *nodeCA) IssueNodeCertificate(ctx context.Context, req *shoalpb.IssueNodeCertificateRequest) (*shoalpb.IssueNodeCertificateResponse, error) {
	token, err := ca.ParseToken(req.GetToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if _, _, err := net.SplitHostPort(req.GetAddr()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "addr: %q is not IP:PORT", req.GetAddr())
	}
	s, err := n.signer()
	if err != nil {
		return nil, err
	}
	if token.Fingerprint != s.cluster.RootCa.Fingerprint {
		return nil, status.Error(codes.PermissionDenied, "join token: it was issued by another cluster (its CA fingerprint does not match this cluster's); get a token from a manager of this cluster")
	}
	var role shoalpb.NodeRole
	switch {
	case ca.SameSecret(req.GetToken(), s.cluster.JoinTokens.Worker):
		role = shoalpb.NodeRole_NODE_ROLE_WORKER
	case ca.SameSecret(req.GetToken(), s.cluster.JoinTokens.Manager):
		role = shoalpb.NodeRole_NODE_ROLE_MANAGER
	default:
		return nil, status.Error(codes.PermissionDenied, "join token: it is not valid for this cluster (rotated or mistyped); get the current one with 'shoal join-token worker' (or manager) on a manager")
	}
	nodeID, err := ca.NodeIDForCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	var existing *shoalpb.Node
	n.m.cfg.Store.View(func(tx state.ReadTx) { existing = tx.Node(nodeID) })
	if existing == nil {
		if err := n.checkAddrFree(req.GetAddr()); err != nil {
			return nil, err
		}
	}
	caRole := ca.RoleWorker
	if role == shoalpb.NodeRole_NODE_ROLE_MANAGER {
		caRole = ca.RoleManager
	}
	now := time.Now()
	certPEM, err := s.root.IssueCertificate(req.GetCsr(), ca.Identity{NodeID: nodeID, ClusterID: s.clusterID, Role: caRole}, now, s.expiry)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	node := &shoalpb.Node{
		Id:          nodeID,
		Meta:        &shoalpb.Meta{CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now)},
		Spec:        &shoalpb.NodeSpec{DesiredRole: role},
		Description: req.GetDescription(),
		Status:      &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_UNKNOWN, Addr: req.GetAddr(), UpdatedAt: timestamppb.New(now)},
		Role:        role,
	}
	switch {
	case existing != nil && existing.GetRole() != role:
		return nil, status.Errorf(codes.AlreadyExists, "node %s joined already, as %s; start it with 'shoal daemon' instead of joining again",
			nodeID, controlapi.RoleName(existing.GetRole()))
	case existing != nil:
		// A retry: the first attempt was committed but its answer was lost.
		// Only the holder of the CSR's key can use the certificate.
	default:
		_, err := n.m.cfg.Store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Node{Node: node}})
		if err != nil && !errors.Is(err, state.ErrExists) {
			return nil, n.m.control.StoreError(err)
		}
	}
	n.m.log.Info("node joined", "node", nodeID, "role", controlapi.RoleName(role), "addr", req.GetAddr())
	return &shoalpb.IssueNodeCertificateResponse{
		NodeId:    nodeID,
		ClusterId: s.clusterID,
		CertPem:   certPEM,
		RootCaPem: s.root.CertPEM,
		Role:      role,
		GossipKey: s.cluster.GossipKey,
		Managers:  n.m.Managers(),
	}, nil
}

// checkAddrFree refuses a second node at an address where a node is still up
// (or not yet known to be down).
func (n *nodeCA) checkAddrFree(addr string) error {
	var err error
	n.m.cfg.Store.View(func(tx state.ReadTx) {
		for _, node := range tx.Nodes() {
			if node.GetStatus().GetAddr() == addr && node.GetStatus().GetState() != shoalpb.NodeState_NODE_STATE_DOWN {
				err = status.Errorf(codes.AlreadyExists, "a node at %s is already part of the cluster (node %s, %s); stop it and remove it with 'shoal node rm', or give this node another --advertise-addr",
					addr, node.Id, controlapi.StateName(node.GetStatus().GetState()))
				return
			}
		}
	})
	return err
}

// RenewNodeCertificate signs a new certificate for the calling node with the
// role it should have now. A demoted manager keeps its manager certificate
// until it has left the Raft configuration, so Raft never sees a voter whose
// certificate its peers refuse.
func (n *nodeCA) RenewNodeCertificate(ctx context.Context, req *shoalpb.RenewNodeCertificateRequest) (*shoalpb.RenewNodeCertificateResponse, error) {
	id, ok := ca.PeerIdentity(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "renewal needs the node's current certificate")
	}
	s, err := n.signer()
	if err != nil {
		return nil, err
	}
	var node *shoalpb.Node
	n.m.cfg.Store.View(func(tx state.ReadTx) { node = tx.Node(id.NodeID) })
	if node == nil {
		return nil, status.Errorf(codes.PermissionDenied, "node %s is not part of the cluster", id.NodeID)
	}
	role := node.GetSpec().GetDesiredRole()
	if role == shoalpb.NodeRole_NODE_ROLE_WORKER && n.m.inRaft(id.NodeID) {
		role = shoalpb.NodeRole_NODE_ROLE_MANAGER
	}
	caRole := ca.RoleWorker
	if role == shoalpb.NodeRole_NODE_ROLE_MANAGER {
		caRole = ca.RoleManager
	}
	certPEM, err := s.root.IssueCertificate(req.GetCsr(), ca.Identity{NodeID: id.NodeID, ClusterID: s.clusterID, Role: caRole}, time.Now(), s.expiry)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	if node.Role != role {
		err := n.m.updateNode(ctx, id.NodeID, func(upd *shoalpb.Node) { upd.Role = role })
		if err != nil {
			return nil, n.m.control.StoreError(err)
		}
	}
	return &shoalpb.RenewNodeCertificateResponse{CertPem: certPEM, Role: role}, nil
}

// updateNode applies change to a fresh copy of the node until the write does
// not race with another one.
func (m *Manager) updateNode(ctx context.Context, nodeID string, change func(*shoalpb.Node)) error {
	for {
		var upd *shoalpb.Node
		m.cfg.Store.View(func(tx state.ReadTx) {
			if n := tx.Node(nodeID); n != nil {
				upd = proto.Clone(n).(*shoalpb.Node)
			}
		})
		if upd == nil {
			return state.ErrNotFound
		}
		change(upd)
		_, err := m.cfg.Store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Node{Node: upd}})
		if errors.Is(err, state.ErrVersionConflict) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

func (m *Manager) inRaft(nodeID string) bool {
	members, err := m.cfg.Store.Members()
	if err != nil {
		return false
	}
	for _, mem := range members {
		if mem.ID == nodeID {
			return true
		}
	}
	return false
}
