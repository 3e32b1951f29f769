package node

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// nodeService serves NodeService on the local socket.
type nodeService struct {
	shoalpb.UnimplementedNodeServiceServer
	n *Node
}

func (s *nodeService) Info(ctx context.Context, _ *shoalpb.InfoRequest) (*shoalpb.InfoResponse, error) {
	n := s.n
	id := n.identity()
	resp := &shoalpb.InfoResponse{
		NodeId:           id.NodeID,
		ClusterId:        id.ClusterID,
		Role:             shoalpb.NodeRole_NODE_ROLE_WORKER,
		Addr:             id.AdvertiseAddr,
		DataDir:          n.cfg.DataDir,
		Version:          n.cfg.Version,
		Runtime:          id.Runtime,
		CertNotAfterUnix: n.creds.Leaf().NotAfter.Unix(),
		State:            "connecting",
	}
	if id.Role == roleManager {
		resp.Role = shoalpb.NodeRole_NODE_ROLE_MANAGER
	}
	for _, m := range id.Managers {
		resp.Managers = append(resp.Managers, &shoalpb.ManagerAddr{NodeId: m.NodeID, ApiAddr: m.APIAddr, GossipAddr: m.GossipAddr})
	}
	n.mu.Lock()
	agent, store, gossip := n.agent, n.store, n.gossip
	n.mu.Unlock()
	if agent != nil {
		manager, lastErr := agent.Status()
		if manager != "" {
			resp.State = "active"
		} else {
			resp.Error = lastErr
		}
	}
	if store != nil {
		resp.LeaderId, _ = store.Leader()
		resp.RaftAppliedIndex = store.AppliedIndex()
		if members, err := store.Members(); err == nil {
			resp.ManagersTotal = uint32(len(members))
			for _, m := range members {
				if m.ID == id.NodeID || (gossip != nil && gossip.Alive(m.ID)) {
					resp.ManagersReachable++
				}
			}
		}
		store.View(func(tx state.ReadTx) { resp.NodesTotal = uint32(len(tx.Nodes())) })
	}
	return resp, nil
}

// Leave takes the node out of the cluster, stops the daemon and clears its
// data dir. A manager must be forced, and first leaves Raft unless it is the
// last manager (then the cluster ends with it).
func (s *nodeService) Leave(ctx context.Context, req *shoalpb.LeaveRequest) (*shoalpb.LeaveResponse, error) {
	n := s.n
	id := n.identity()
	if id.Role == roleManager {
		if !req.GetForce() {
			return nil, status.Error(codes.FailedPrecondition, "this node is a manager: leaving removes it from Raft and may cost the cluster its quorum; demote it first with 'shoal node demote', or use 'shoal leave --force'")
		}
		if store := n.currentStore(); store != nil {
			members, err := store.Members()
			if err == nil && len(members) > 1 {
				if err := n.leaveRaft(ctx, id); err != nil {
					return nil, status.Errorf(codes.Unavailable, "could not leave Raft: %s; the other managers must be reachable (or stop this daemon and remove the node with 'shoal node demote' and 'shoal node rm')", status.Convert(err).Message())
				}
			}
		}
	}
	select {
	case n.leave <- struct{}{}:
	default:
	}
	return &shoalpb.LeaveResponse{}, nil
}

func (n *Node) leaveRaft(ctx context.Context, id Identity) error {
	conn, err := grpc.NewClient(id.AdvertiseAddr, grpc.WithTransportCredentials(credentials.NewTLS(n.creds.ClientTLS(ca.RoleManager))))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = shoalpb.NewRaftMembershipClient(conn).Leave(ctx, &shoalpb.LeaveRaftRequest{NodeId: id.NodeID})
	return err
}
