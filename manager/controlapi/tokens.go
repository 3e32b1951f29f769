package controlapi

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"shoal/manager/ca"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// DefaultCertExpiry is the node certificate lifetime when the cluster spec
// does not set one.
const DefaultCertExpiry = 90 * 24 * time.Hour

// GetJoinTokens returns the current worker and manager join tokens.
func (s *Server) GetJoinTokens(ctx context.Context, _ *shoalpb.GetJoinTokensRequest) (*shoalpb.JoinTokens, error) {
	var tokens *shoalpb.JoinTokens
	s.cfg.Store.View(func(tx state.ReadTx) {
		if c := tx.Cluster(); c != nil {
			tokens = proto.Clone(c.JoinTokens).(*shoalpb.JoinTokens)
		}
	})
	if tokens == nil {
		return nil, status.Error(codes.FailedPrecondition, "the cluster is not initialised yet")
	}
	return tokens, nil
}

// RotateJoinToken replaces one role's token; the old one stops working at once.
func (s *Server) RotateJoinToken(ctx context.Context, req *shoalpb.RotateJoinTokenRequest) (*shoalpb.JoinTokens, error) {
	role := req.GetRole()
	if role != shoalpb.NodeRole_NODE_ROLE_WORKER && role != shoalpb.NodeRole_NODE_ROLE_MANAGER {
		return nil, status.Error(codes.InvalidArgument, "role: rotate the 'worker' or the 'manager' token")
	}
	err := s.update(ctx, func(tx state.ReadTx) ([]*shoalpb.StoreAction, error) {
		cluster := tx.Cluster()
		if cluster == nil {
			return nil, status.Error(codes.FailedPrecondition, "the cluster is not initialised yet")
		}
		c := proto.Clone(cluster).(*shoalpb.Cluster)
		token, err := ca.NewToken(c.RootCa.Fingerprint)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if role == shoalpb.NodeRole_NODE_ROLE_WORKER {
			c.JoinTokens.Worker = token
		} else {
			c.JoinTokens.Manager = token
		}
		return []*shoalpb.StoreAction{updateCluster(c)}, nil
	})
	if err != nil {
		return nil, err
	}
	return s.GetJoinTokens(ctx, nil)
}

// IssueClientCertificate signs a certificate for remote CLI and API use.
func (s *Server) IssueClientCertificate(ctx context.Context, req *shoalpb.IssueClientCertificateRequest) (*shoalpb.IssueClientCertificateResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name: a client certificate needs a name (--name)")
	}
	var root *ca.RootCA
	var clusterID string
	expiry := DefaultCertExpiry
	var err error
	s.cfg.Store.View(func(tx state.ReadTx) {
		c := tx.Cluster()
		if c == nil {
			err = status.Error(codes.FailedPrecondition, "the cluster is not initialised yet")
			return
		}
		clusterID = c.Id
		if sec := c.GetSpec().GetNodeCertExpirySeconds(); sec > 0 {
			expiry = time.Duration(sec) * time.Second
		}
		root, err = ca.ParseRootCA(c.RootCa.CertPem, c.RootCa.KeyPem)
	})
	if err != nil {
		return nil, err
	}
	certPEM, err := root.IssueCertificate(req.GetCsr(), ca.Identity{NodeID: req.GetName(), ClusterID: clusterID, Role: ca.RoleClient}, s.cfg.Now(), expiry)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	return &shoalpb.IssueClientCertificateResponse{CertPem: certPEM, RootCaPem: root.CertPEM}, nil
}
