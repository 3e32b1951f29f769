package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// peers caches one client connection per API address, authenticated with
// this node's certificate and requiring one of the given roles back.
type peers struct {
	creds *ca.Credentials
	roles []ca.Role
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeers(creds *ca.Credentials, roles ...ca.Role) *peers {
	return &peers{creds: creds, roles: roles, conns: map[string]*grpc.ClientConn{}}
}

func (p *peers) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(p.creds.ClientTLS(p.roles...))))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
}

// TaskLogs implements controlapi.NodeDialer.
func (p *peers) TaskLogs(addr string) (shoalpb.TaskLogsClient, error) {
	conn, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return shoalpb.NewTaskLogsClient(conn), nil
}

// forwarder implements state.Forwarder over RaftMembership.Propose and
// ReadIndex, on one cached connection to the leader.
type forwarder struct{ peers *peers }

func (f *forwarder) Forward(ctx context.Context, _, leaderAddr string, cmd []byte) (uint64, error) {
	client, err := f.leader(leaderAddr)
	if err != nil {
		return 0, err
	}
	resp, err := client.Propose(ctx, &shoalpb.ProposeRequest{Command: cmd})
	if err != nil {
		return 0, fromStatus(err)
	}
	return resp.Index, nil
}

func (f *forwarder) ReadIndex(ctx context.Context, _, leaderAddr string) (uint64, error) {
	client, err := f.leader(leaderAddr)
	if err != nil {
		return 0, err
	}
	resp, err := client.ReadIndex(ctx, &shoalpb.ReadIndexRequest{})
	if err != nil {
		return 0, fromStatus(err)
	}
	return resp.Index, nil
}

// leader returns a RaftMembership client for the leader at Raft address
// leaderAddr.
func (f *forwarder) leader(leaderAddr string) (shoalpb.RaftMembershipClient, error) {
	conn, err := f.peers.conn(APIAddr(leaderAddr))
	if err != nil {
		return nil, err
	}
	return shoalpb.NewRaftMembershipClient(conn), nil
}

// Store errors cross the wire between managers as status codes; toStatus and
// fromStatus are inverses so errors.Is works on the follower as on the leader.
var storeCodes = []struct {
	err  error
	code codes.Code
}{
	{state.ErrVersionConflict, codes.Aborted},
	{state.ErrNotFound, codes.NotFound},
	{state.ErrExists, codes.AlreadyExists},
	{state.ErrInvalidAction, codes.InvalidArgument},
	{state.ErrNotLeader, codes.FailedPrecondition},
	{state.ErrNoLeader, codes.Unavailable},
}

func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, sc := range storeCodes {
		if errors.Is(err, sc.err) {
			return status.Error(sc.code, err.Error())
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, sc := range storeCodes {
		if st.Code() == sc.code {
			return fmt.Errorf("%w (from the leader: %s)", sc.err, st.Message())
		}
	}
	// Anything else (a deadline in particular) leaves the outcome unknown: the
	// leader may have applied the command, so it must not be retried blindly.
	return err
}
