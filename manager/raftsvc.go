package manager

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	shoalpb "shoal/proto"
)

// raftMembership serves RaftMembership: managers joining and leaving Raft, and
// followers' writes forwarded to the leader.
type raftMembership struct {
	shoalpb.UnimplementedRaftMembershipServer
	m *Manager
}

// callerIs checks that the caller holds a manager certificate for nodeID.
func callerIs(ctx context.Context, nodeID string) error {
	id, ok := ca.PeerIdentity(ctx)
	if !ok || id.Role != ca.RoleManager {
		return status.Error(codes.PermissionDenied, "only managers take part in Raft")
	}
	if id.NodeID != nodeID {
		return status.Errorf(codes.PermissionDenied, "node %s cannot act for node %s", id.NodeID, nodeID)
	}
	return nil
}

// leaderClient returns a client for the leader when this manager is not it.
func (r *raftMembership) leaderClient() (shoalpb.RaftMembershipClient, error) {
	addr := r.m.LeaderAPIAddr()
	if addr == "" {
		return nil, status.Error(codes.Unavailable, "no Raft leader is known; retry shortly")
	}
	conn, err := r.m.peers.conn(addr)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return shoalpb.NewRaftMembershipClient(conn), nil
}

func (r *raftMembership) Join(ctx context.Context, req *shoalpb.JoinRaftRequest) (*shoalpb.JoinRaftResponse, error) {
	if err := callerIs(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	store := r.m.cfg.Store
	if !store.IsLeader() {
		client, err := r.leaderClient()
		if err != nil {
			return nil, err
		}
		return client.Join(ctx, req)
	}
	if err := store.AddVoter(ctx, req.GetNodeId(), req.GetRaftAddr()); err != nil {
		return nil, toStatus(err)
	}
	apiAddr := APIAddr(req.GetRaftAddr())
	err := r.m.updateNode(ctx, req.GetNodeId(), func(n *shoalpb.Node) {
		n.Manager = &shoalpb.ManagerInfo{RaftAddr: req.GetRaftAddr(), ApiAddr: apiAddr}
	})
	if err != nil {
		return nil, toStatus(err)
	}
	r.m.log.Info("manager joined raft", "node", req.GetNodeId(), "raft_addr", req.GetRaftAddr())
	members, err := store.Members()
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &shoalpb.JoinRaftResponse{}
	for _, mem := range members {
		resp.Members = append(resp.Members, &shoalpb.RaftMember{NodeId: mem.ID, RaftAddr: mem.Addr})
	}
	return resp, nil
}

func (r *raftMembership) Leave(ctx context.Context, req *shoalpb.LeaveRaftRequest) (*shoalpb.LeaveRaftResponse, error) {
	if err := callerIs(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	store := r.m.cfg.Store
	if !store.IsLeader() {
		client, err := r.leaderClient()
		if err != nil {
			return nil, err
		}
		return client.Leave(ctx, req)
	}
	if err := store.RemoveServer(ctx, req.GetNodeId()); err != nil {
		return nil, toStatus(err)
	}
	err := r.m.updateNode(ctx, req.GetNodeId(), func(n *shoalpb.Node) { n.Manager = nil })
	if err != nil {
		return nil, toStatus(err)
	}
	return &shoalpb.LeaveRaftResponse{}, nil
}

func (r *raftMembership) Propose(ctx context.Context, req *shoalpb.ProposeRequest) (*shoalpb.ProposeResponse, error) {
	index, err := r.m.cfg.Store.ApplyCommand(ctx, req.GetCommand())
	if err != nil {
		return nil, toStatus(err)
	}
	return &shoalpb.ProposeResponse{Index: index}, nil
}

func (r *raftMembership) ReadIndex(context.Context, *shoalpb.ReadIndexRequest) (*shoalpb.ReadIndexResponse, error) {
	index, err := r.m.cfg.Store.ReadIndex()
	if err != nil {
		return nil, toStatus(err)
	}
	return &shoalpb.ReadIndexResponse{Index: index}, nil
}
