// Package worker is the agent every node runs, managers included: it holds one
// session with the leader's dispatcher, heartbeats on it, learns the manager
// list and its own node object from it, and renews the node certificate. Tasks
// arrive through the same session in a later issue.
//
// Flow: Run picks a manager (known addresses first, then gossip), opens a
// Session; a follower answers with the leader's address and the agent moves
// there. While the session lasts a heartbeat loop keeps it alive. When the
// node's desired role differs from its certificate's, or the certificate is
// due, the agent renews it; a new role ends Run with a RoleChange so the node
// restarts its components in that role.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	"shoal/manager/dispatcher"
	shoalpb "shoal/proto"
)

// renewRetry is how soon a failed certificate renewal is tried again.
const renewRetry = 5 * time.Second

// ErrRemoved is returned by Run when the cluster removed this node.
var ErrRemoved = errors.New("this node was removed from the cluster")

// RoleChange is returned by Run once the node holds a certificate for a new role.
type RoleChange struct{ Role shoalpb.NodeRole }

func (r *RoleChange) Error() string { return fmt.Sprintf("node role changed to %s", r.Role) }

// Executor runs the tasks the leader assigns to this node.
type Executor interface {
	// Assign hands over an assignments message; it must not block.
	Assign(msg *shoalpb.AssignmentsMessage)
	// Updates delivers batches of task status changes to report.
	Updates() <-chan []*shoalpb.TaskStatusUpdate
	// Resync queues every task's current status again, for a new session.
	Resync()
}

// Config wires an Agent.
type Config struct {
	Addr        string // the node's advertised gRPC address
	Description *shoalpb.NodeDescription
	Creds       *ca.Credentials
	// Managers returns the API addresses to try, best first.
	Managers func() []string
	// OnManagers is told the manager list each time a session message carries it.
	OnManagers func([]*shoalpb.ManagerAddr)
	// OnNetwork is handed every session message: its node's own task
	// subnet ("" while it has none), the cluster's task pool ("" from a
	// leader that does not send it), the other nodes' subnets and the
	// cluster's networks, so the node can make its slice of each network
	// and route to the other nodes' tasks. It must not block; nil ignores
	// them.
	OnNetwork func(*shoalpb.SessionMessage)
	// OnEndpoints is handed every message of the Endpoints stream (the
	// services and ready tasks the node's DNS, VIPs and routing mesh
	// serve); nil: the node does not open the stream. It must not block.
	OnEndpoints func(*shoalpb.EndpointsMessage)
	// PortErrors returns the ingress ports the node's routing mesh cannot
	// serve right now (worker/endpoints Sinks.PortErrors); every heartbeat
	// carries them, so the leader learns a change within a heartbeat period
	// and a new leader learns the set on the first heartbeat of a session.
	// The list is empty on almost every node, which costs the heartbeat
	// nothing. It must not block; nil reports none.
	PortErrors func() []*shoalpb.PortError
	// SaveCreds persists the credentials after a renewal.
	SaveCreds func() error
	// Executor runs the node's tasks; nil for a node that runs none.
	Executor Executor
	Logger   *slog.Logger
}

// Agent is the node's side of the dispatcher protocol.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	conns map[string]*grpc.ClientConn

	mu        sync.Mutex
	connected string // manager address of the current session, "" when none
	lastErr   string
}

// New returns an agent; Run starts it.
func New(cfg Config) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"), conns: map[string]*grpc.ClientConn{}}
}

// Status reports the manager the session is with ("" if none) and the last error.
func (a *Agent) Status() (manager, lastErr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected, a.lastErr
}

func (a *Agent) setStatus(manager string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.connected = manager
	if err != nil {
		a.lastErr = err.Error()
	}
}

func (a *Agent) conn(addr string) (*grpc.ClientConn, error) {
	if c := a.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(a.cfg.Creds.ClientTLS(ca.RoleManager))))
	if err != nil {
		return nil, err
	}
	a.conns[addr] = c
	return c, nil
}

// Run keeps a session with the leader until ctx ends (nil), the node is
// removed (ErrRemoved) or its role changes (*RoleChange).
func (a *Agent) Run(ctx context.Context) error {
	defer func() {
		for _, c := range a.conns {
			_ = c.Close()
		}
	}()
	renew := time.NewTimer(time.Until(ca.RenewAt(a.cfg.Creds.Leaf(), nil)))
	defer renew.Stop()
	backoff := 50 * time.Millisecond
	next := ""
	tried := 0
	for ctx.Err() == nil {
		addr := next
		if addr == "" {
			candidates := a.cfg.Managers()
			if len(candidates) == 0 {
				return errors.New("no manager address is known; join the cluster again")
			}
			addr = candidates[tried%len(candidates)]
			tried++
		}
		next = ""
		err := a.session(ctx, addr, renew)
		a.setStatus("", err)
		var rc *RoleChange
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrRemoved), errors.As(err, &rc):
			return err
		}
		if leader := leaderHint(err); leader != "" && leader != addr {
			next = leader
			continue
		}
		a.log.Debug("session ended", "manager", addr, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
	return nil
}

// leaderHint extracts the leader's address from a follower's refusal.
func leaderHint(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return ""
	}
	const marker = "the leader is at "
	if i := strings.Index(st.Message(), marker); i >= 0 {
		return strings.TrimSpace(st.Message()[i+len(marker):])
	}
	return ""
}

// session runs one session with the manager at addr.
func (a *Agent) session(ctx context.Context, addr string, renew *time.Timer) error {
	conn, err := a.conn(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := shoalpb.NewDispatcherClient(conn)
	stream, err := client.Session(ctx, &shoalpb.SessionRequest{Description: a.cfg.Description, Addr: a.cfg.Addr})
	if err != nil {
		return err
	}
	msgs := make(chan *shoalpb.SessionMessage)
	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()

	var heartbeatErr chan error
	var node *shoalpb.Node
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			if status.Code(err) == codes.PermissionDenied {
				return fmt.Errorf("%w: %s", ErrRemoved, status.Convert(err).Message())
			}
			return err
		case err := <-heartbeatErr:
			return err // heartbeats, assignments or status reports failed
		case <-renew.C:
			if err := a.renew(ctx, conn, node); err != nil {
				renew.Reset(renewRetry)
				return err
			}
			renew.Reset(time.Until(ca.RenewAt(a.cfg.Creds.Leaf(), nil)))
		case msg := <-msgs:
			if heartbeatErr == nil {
				a.log.Info("session established", "manager", addr)
				a.setStatus(addr, nil)
				heartbeatErr = make(chan error, 3)
				go func() { heartbeatErr <- a.heartbeat(ctx, client, msg.SessionId, msg.HeartbeatPeriodMs) }()
				if a.cfg.Executor != nil {
					a.cfg.Executor.Resync()
					go func() { heartbeatErr <- a.assignments(ctx, client, msg.SessionId) }()
					go func() { heartbeatErr <- a.reportStatuses(ctx, client, msg.SessionId) }()
				}
				if a.cfg.OnEndpoints != nil {
					go func() { heartbeatErr <- a.endpoints(ctx, client, msg.SessionId) }()
				}
			}
			if a.cfg.OnManagers != nil && len(msg.Managers) > 0 {
				a.cfg.OnManagers(msg.Managers)
			}
			node = msg.Node
			if a.cfg.OnNetwork != nil {
				a.cfg.OnNetwork(msg)
			}
			if want := node.GetSpec().GetDesiredRole(); want != shoalpb.NodeRole_NODE_ROLE_UNSPECIFIED && want != a.role() {
				if err := a.renew(ctx, conn, node); err != nil {
					return err
				}
			}
		}
	}
}

// role is the role of the node's current certificate.
func (a *Agent) role() shoalpb.NodeRole {
	if a.cfg.Creds.Identity().Role == ca.RoleManager {
		return shoalpb.NodeRole_NODE_ROLE_MANAGER
	}
	return shoalpb.NodeRole_NODE_ROLE_WORKER
}

// renew gets a fresh certificate; if it carries a new role Run must end.
func (a *Agent) renew(ctx context.Context, conn *grpc.ClientConn, node *shoalpb.Node) error {
	keyPEM, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		return err
	}
	resp, err := shoalpb.NewNodeCAClient(conn).RenewNodeCertificate(ctx, &shoalpb.RenewNodeCertificateRequest{Csr: csr})
	if err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	before := a.role()
	if err := a.cfg.Creds.Replace(resp.CertPem, keyPEM); err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	if err := a.cfg.SaveCreds(); err != nil {
		return fmt.Errorf("save renewed certificate: %w", err)
	}
	a.log.Info("certificate renewed", "role", resp.Role, "not_after", a.cfg.Creds.Leaf().NotAfter)
	if resp.Role != before {
		return &RoleChange{Role: resp.Role}
	}
	if want := node.GetSpec().GetDesiredRole(); want != shoalpb.NodeRole_NODE_ROLE_UNSPECIFIED && want != resp.Role {
		// The leader has not finished the role change (a demoted manager
		// leaves Raft first); the next node update triggers another try.
		a.log.Info("role change pending on the leader", "want", want)
	}
	return nil
}

// heartbeat sends heartbeats at the period the dispatcher asks for. A
// heartbeat may take as long as the dispatcher lets a session stay silent
// (dispatcher.MissedHeartbeats periods): a leader slowed by load for a moment
// must not cost the node its session, which would have it marked down and its
// tasks replaced.
func (a *Agent) heartbeat(ctx context.Context, client shoalpb.DispatcherClient, sessionID string, periodMs int64) error {
	period := time.Duration(periodMs) * time.Millisecond
	if period <= 0 {
		period = dispatcher.DefaultHeartbeatPeriod
	}
	next := time.NewTimer(period)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-next.C:
		}
		sent := time.Now()
		hbCtx, cancel := context.WithTimeout(ctx, dispatcher.MissedHeartbeats*period)
		req := &shoalpb.HeartbeatRequest{SessionId: sessionID}
		if a.cfg.PortErrors != nil {
			req.PortErrors = a.cfg.PortErrors()
		}
		resp, err := client.Heartbeat(hbCtx, req)
		cancel()
		if err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		if resp.HeartbeatPeriodMs > 0 {
			period = time.Duration(resp.HeartbeatPeriodMs) * time.Millisecond
		}
		// One heartbeat per period from their start, however long the
		// last one took to answer.
		next.Reset(max(0, period-time.Since(sent)))
	}
}

// assignments feeds the leader's task assignments to the executor.
func (a *Agent) assignments(ctx context.Context, client shoalpb.DispatcherClient, sessionID string) error {
	stream, err := client.Assignments(ctx, &shoalpb.AssignmentsRequest{SessionId: sessionID})
	if err != nil {
		return fmt.Errorf("assignments: %w", err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("assignments: %w", err)
		}
		a.cfg.Executor.Assign(msg)
	}
}

// endpoints feeds the leader's endpoint changes to OnEndpoints.
func (a *Agent) endpoints(ctx context.Context, client shoalpb.DispatcherClient, sessionID string) error {
	stream, err := client.Endpoints(ctx, &shoalpb.EndpointsRequest{SessionId: sessionID})
	if err != nil {
		return fmt.Errorf("endpoints: %w", err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("endpoints: %w", err)
		}
		a.cfg.OnEndpoints(msg)
	}
}

// reportStatuses sends the executor's status batches to the leader. A batch
// that fails ends the session; the next session resyncs every status.
func (a *Agent) reportStatuses(ctx context.Context, client shoalpb.DispatcherClient, sessionID string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case batch := <-a.cfg.Executor.Updates():
			if _, err := client.UpdateTaskStatus(ctx, &shoalpb.UpdateTaskStatusRequest{SessionId: sessionID, Updates: batch}); err != nil {
				return fmt.Errorf("report task status: %w", err)
			}
		}
	}
}
