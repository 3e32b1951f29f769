package controlapi

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// Manager status values shown by `node ls`.
const (
	ManagerLeader      = "leader"
	ManagerReachable   = "reachable"
	ManagerUnreachable = "unreachable"
)

// ListNodes lists nodes, optionally filtered.
func (s *Server) ListNodes(ctx context.Context, req *shoalpb.ListNodesRequest) (*shoalpb.ListNodesResponse, error) {
	for key := range req.GetFilters() {
		switch key {
		case "role", "id", "name", "availability", "state":
		default:
			return nil, status.Errorf(codes.InvalidArgument, "unknown filter %q; use one of role, id, name, availability, state", key)
		}
	}
	var nodes []*shoalpb.Node
	s.cfg.Store.View(func(tx state.ReadTx) { nodes = tx.Nodes() })
	statuses := s.managerStatuses()
	resp := &shoalpb.ListNodesResponse{}
	for _, n := range nodes {
		if !matchNode(n, req.GetFilters()) {
			continue
		}
		resp.Nodes = append(resp.Nodes, &shoalpb.NodeView{Node: n, ManagerStatus: statuses[n.Id]})
	}
	return resp, nil
}

func matchNode(n *shoalpb.Node, filters map[string]string) bool {
	for key, want := range filters {
		var got string
		switch key {
		case "role":
			got = RoleName(n.GetRole())
		case "id":
			if !strings.HasPrefix(n.Id, want) {
				return false
			}
			continue
		case "name":
			got = n.GetDescription().GetHostname()
		case "availability":
			got = AvailabilityName(n.GetSpec().GetAvailability())
		case "state":
			got = StateName(n.GetStatus().GetState())
		}
		if got != want {
			return false
		}
	}
	return true
}

// managerStatuses computes leader/reachable/unreachable for every Raft member.
// A manager is reachable while gossip says it is alive and the leader has not
// marked it down (its heartbeats notice a dead process before gossip does).
func (s *Server) managerStatuses() map[string]string {
	out := map[string]string{}
	members, err := s.cfg.Store.Members()
	if err != nil {
		return out
	}
	down := map[string]bool{}
	s.cfg.Store.View(func(tx state.ReadTx) {
		for _, m := range members {
			down[m.ID] = tx.Node(m.ID).GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_DOWN
		}
	})
	leader, _ := s.cfg.Store.Leader()
	for _, m := range members {
		switch {
		case m.ID == leader:
			out[m.ID] = ManagerLeader
		case m.ID == s.cfg.NodeID || (s.cfg.Liveness.Alive(m.ID) && !down[m.ID]):
			out[m.ID] = ManagerReachable
		default:
			out[m.ID] = ManagerUnreachable
		}
	}
	return out
}

// GetNode returns one node.
func (s *Server) GetNode(ctx context.Context, req *shoalpb.GetNodeRequest) (*shoalpb.NodeView, error) {
	var node *shoalpb.Node
	var err error
	s.cfg.Store.View(func(tx state.ReadTx) { node, err = s.resolveNode(tx, req.GetNode()) })
	if err != nil {
		return nil, err
	}
	return &shoalpb.NodeView{Node: node, ManagerStatus: s.managerStatuses()[node.Id]}, nil
}

// resolveNode finds a node by full ID, unique ID prefix, hostname, address or
// "self". Ambiguity is an error that lists the candidates.
func (s *Server) resolveNode(tx state.ReadTx, ref string) (*shoalpb.Node, error) {
	if ref == "" {
		return nil, status.Error(codes.InvalidArgument, "node: missing node ID, name or address")
	}
	if ref == "self" {
		ref = s.cfg.NodeID
	}
	if n := tx.Node(ref); n != nil {
		return n, nil
	}
	var matches []*shoalpb.Node
	for _, n := range tx.Nodes() {
		if strings.HasPrefix(n.Id, ref) || n.GetDescription().GetHostname() == ref || n.GetStatus().GetAddr() == ref || hostOf(n.GetStatus().GetAddr()) == ref {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 0:
		return nil, status.Errorf(codes.NotFound, "node %q not found; 'shoal node ls' lists the nodes", ref)
	case 1:
		return matches[0], nil
	}
	ids := make([]string, len(matches))
	for i, n := range matches {
		ids[i] = n.Id
	}
	sort.Strings(ids)
	return nil, status.Errorf(codes.InvalidArgument, "node %q is ambiguous: it matches %s; use a longer ID prefix", ref, strings.Join(ids, ", "))
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[:i]
	}
	return addr
}

// UpdateNode changes availability, the drain deadline, labels or the
// desired role. drain_started_at is set when availability becomes DRAIN and
// cleared when it stops being DRAIN.
func (s *Server) UpdateNode(ctx context.Context, req *shoalpb.UpdateNodeRequest) (*shoalpb.NodeView, error) {
	for k := range req.GetLabelAdd() {
		if k == "" {
			return nil, status.Error(codes.InvalidArgument, "--label-add: empty label key; use KEY=VALUE")
		}
	}
	if req.GetHasDrainDeadline() && req.GetDrainDeadlineMs() < 0 {
		return nil, invalid("--drain-deadline", "%s must not be negative; 0 means no deadline", time.Duration(req.GetDrainDeadlineMs())*time.Millisecond)
	}
	var nodeID string
	err := s.update(ctx, func(tx state.ReadTx) ([]*shoalpb.StoreAction, error) {
		n, err := s.resolveNode(tx, req.GetNode())
		if err != nil {
			return nil, err
		}
		nodeID = n.Id
		upd := proto.Clone(n).(*shoalpb.Node)
		if upd.Spec == nil {
			upd.Spec = &shoalpb.NodeSpec{}
		}
		if req.GetHasAvailability() {
			upd.Spec.Availability = req.GetAvailability()
		}
		if req.GetHasDrainDeadline() {
			upd.Spec.DrainDeadlineMs = req.GetDrainDeadlineMs()
		}
		now := s.cfg.Now()
		switch drain := upd.Spec.Availability == shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN; {
		case drain && n.GetSpec().GetAvailability() != shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN:
			upd.DrainStartedAt = timestamppb.New(now)
		case !drain:
			upd.DrainStartedAt = nil
		}
		for _, k := range req.GetLabelRm() {
			if _, ok := upd.Spec.Labels[k]; !ok {
				return nil, status.Errorf(codes.InvalidArgument, "--label-rm: node %s has no label %q", n.Id, k)
			}
			delete(upd.Spec.Labels, k)
		}
		for k, v := range req.GetLabelAdd() {
			if upd.Spec.Labels == nil {
				upd.Spec.Labels = map[string]string{}
			}
			upd.Spec.Labels[k] = v
		}
		if role := req.GetDesiredRole(); role != shoalpb.NodeRole_NODE_ROLE_UNSPECIFIED && role != upd.Spec.DesiredRole {
			if role == shoalpb.NodeRole_NODE_ROLE_WORKER {
				if err := s.checkDemote(tx, n); err != nil {
					return nil, err
				}
			}
			upd.Spec.DesiredRole = role
		}
		if proto.Equal(upd, n) {
			return nil, nil
		}
		upd.Meta.UpdatedAt = timestamppb.New(now)
		return []*shoalpb.StoreAction{updateNode(upd)}, nil
	})
	if err != nil {
		return nil, err
	}
	return s.GetNode(ctx, &shoalpb.GetNodeRequest{Node: nodeID})
}

// checkDemote refuses to demote the last manager, or one whose removal from
// Raft would leave the remaining managers without a quorum.
func (s *Server) checkDemote(tx state.ReadTx, n *shoalpb.Node) error {
	managers := 0
	for _, other := range tx.Nodes() {
		if other.Id != n.Id && other.GetSpec().GetDesiredRole() == shoalpb.NodeRole_NODE_ROLE_MANAGER {
			managers++
		}
	}
	if managers == 0 {
		return status.Errorf(codes.FailedPrecondition, "cannot demote node %s: it is the last manager; promote another node first", n.Id)
	}
	members, err := s.cfg.Store.Members()
	if err != nil {
		return s.StoreError(err)
	}
	remaining, reachable := 0, 0
	for _, m := range members {
		if !m.Voter || m.ID == n.Id {
			continue
		}
		remaining++
		if m.ID == s.cfg.NodeID || s.cfg.Liveness.Alive(m.ID) {
			reachable++
		}
	}
	if remaining > 0 && reachable < remaining/2+1 {
		return status.Errorf(codes.FailedPrecondition, "cannot demote node %s: only %d of the %d other managers are reachable, fewer than a quorum; bring managers back first", n.Id, reachable, remaining)
	}
	return nil
}

// RemoveNode deletes a node and revokes its certificate.
func (s *Server) RemoveNode(ctx context.Context, req *shoalpb.RemoveNodeRequest) (*shoalpb.RemoveNodeResponse, error) {
	members, err := s.cfg.Store.Members()
	if err != nil {
		return nil, s.StoreError(err)
	}
	err = s.update(ctx, func(tx state.ReadTx) ([]*shoalpb.StoreAction, error) {
		n, err := s.resolveNode(tx, req.GetNode())
		if err != nil {
			return nil, err
		}
		for _, m := range members {
			if m.ID == n.Id {
				return nil, status.Errorf(codes.FailedPrecondition, "node %s is a manager; demote it first with 'shoal node demote %s'", n.Id, n.Id)
			}
		}
		if n.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_READY && !req.GetForce() {
			return nil, status.Errorf(codes.FailedPrecondition, "node %s is ready; stop it with 'shoal leave' on that node first, or use --force to remove it anyway", n.Id)
		}
		cluster := tx.Cluster()
		if cluster == nil {
			return nil, status.Error(codes.FailedPrecondition, "the cluster is not initialised yet")
		}
		c := proto.Clone(cluster).(*shoalpb.Cluster)
		c.RemovedNodes = append(c.RemovedNodes, n.Id)
		return []*shoalpb.StoreAction{
			{Kind: shoalpb.StoreActionKind_STORE_ACTION_DELETE, Target: &shoalpb.StoreAction_Node{Node: n}},
			updateCluster(c),
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return &shoalpb.RemoveNodeResponse{}, nil
}

func updateNode(n *shoalpb.Node) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Node{Node: n}}
}

func updateCluster(c *shoalpb.Cluster) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Cluster{Cluster: c}}
}

// RoleName is the user-facing name of a role.
func RoleName(r shoalpb.NodeRole) string {
	switch r {
	case shoalpb.NodeRole_NODE_ROLE_MANAGER:
		return "manager"
	case shoalpb.NodeRole_NODE_ROLE_WORKER:
		return "worker"
	}
	return "unknown"
}

// AvailabilityName is the user-facing name of an availability.
func AvailabilityName(a shoalpb.NodeAvailability) string {
	switch a {
	case shoalpb.NodeAvailability_NODE_AVAILABILITY_PAUSE:
		return "pause"
	case shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		return "drain"
	}
	return "active"
}

// ParseAvailability parses active|pause|drain.
func ParseAvailability(s string) (shoalpb.NodeAvailability, error) {
	switch s {
	case "active":
		return shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE, nil
	case "pause":
		return shoalpb.NodeAvailability_NODE_AVAILABILITY_PAUSE, nil
	case "drain":
		return shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN, nil
	}
	return 0, fmt.Errorf("--availability: %q is not one of active, pause, drain", s)
}

// StateName is the user-facing name of a node state.
func StateName(s shoalpb.NodeState) string {
	switch s {
	case shoalpb.NodeState_NODE_STATE_READY:
		return "ready"
	case shoalpb.NodeState_NODE_STATE_DOWN:
		return "down"
	}
	return "unknown"
}
