package manager

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	"shoal/manager/state"
)

// accessRule says which certificate roles may call the methods under a prefix.
// An empty roles list means no certificate is needed.
type accessRule struct {
	prefix string
	roles  []ca.Role
}

// accessRules are matched in order; the first matching prefix decides. A
// method matching none is refused, so a new service is closed until listed.
var accessRules = []accessRule{
	{"/shoal.v1.NodeCA/GetRootCA", nil},
	{"/shoal.v1.NodeCA/IssueNodeCertificate", nil},
	{"/grpc.health.v1.Health/", nil},
	{"/shoal.v1.NodeCA/", []ca.Role{ca.RoleManager, ca.RoleWorker}},
	{"/shoal.v1.Dispatcher/", []ca.Role{ca.RoleManager, ca.RoleWorker}},
	{"/shoal.v1.RaftMembership/", []ca.Role{ca.RoleManager}},
	{"/shoal.v1.TaskLogs/", []ca.Role{ca.RoleManager}},
	// Nodes fetch images from each other: a worker asks a manager to
	// Export with search_cluster, the manager asks the nodes' List and
	// Export. Images.Load is only served on the local socket.
	{"/shoal.v1.Images/List", []ca.Role{ca.RoleManager, ca.RoleWorker, ca.RoleClient}},
	{"/shoal.v1.Images/Export", []ca.Role{ca.RoleManager, ca.RoleWorker}},
	// `shoal dns lookup`: a client asks a manager, which relays a question
	// about another node to that node.
	{"/shoal.v1.NodeDNS/", []ca.Role{ca.RoleManager, ca.RoleClient}},
	{"/shoal.v1.ControlService/", []ca.Role{ca.RoleManager, ca.RoleClient}},
	{"/grpc.reflection.", []ca.Role{ca.RoleManager, ca.RoleClient}},
}

// authorize checks the caller of method against accessRules and, when
// removed is set, against the list of removed nodes.
func authorize(ctx context.Context, method string, removed func(nodeID string) bool) error {
	for _, rule := range accessRules {
		if !strings.HasPrefix(method, rule.prefix) {
			continue
		}
		if rule.roles == nil {
			return nil
		}
		id, ok := ca.PeerIdentity(ctx)
		if !ok {
			return status.Errorf(codes.Unauthenticated, "%s needs a client certificate of this cluster; create one with 'shoal cert client' on a manager", method)
		}
		if !slices.Contains(rule.roles, id.Role) {
			return status.Errorf(codes.PermissionDenied, "%s is not allowed for a %s certificate (node %s); it needs one of %v", method, id.Role, id.NodeID, rule.roles)
		}
		if removed != nil && removed(id.NodeID) {
			return status.Errorf(codes.PermissionDenied, "node %s was removed from the cluster; its certificate is no longer accepted", id.NodeID)
		}
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s is not served on the cluster port", method)
}

func (m *Manager) removed(nodeID string) bool {
	var removed bool
	m.cfg.Store.View(func(tx state.ReadTx) {
		if c := tx.Cluster(); c != nil {
			removed = slices.Contains(c.RemovedNodes, nodeID)
		}
	})
	return removed
}

// AuthorizationOptions returns the interceptors that enforce certificate roles
// on a cluster-port server. removed, when set, refuses revoked nodes; a worker,
// which has no store, passes nil.
func AuthorizationOptions(removed func(nodeID string) bool) []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := authorize(ctx, info.FullMethod, removed); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := authorize(ss.Context(), info.FullMethod, removed); err != nil {
			return err
		}
		return handler(srv, ss)
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// AuthorizationOptions are the interceptors of this manager's cluster port.
func (m *Manager) AuthorizationOptions() []grpc.ServerOption { return AuthorizationOptions(m.removed) }
