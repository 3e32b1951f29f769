// Package dispatcher serves the node protocol on the leader: every node's agent
// holds one session, heartbeats on it, and receives its own node object and the
// manager list. The dispatcher turns sessions, heartbeats and gossip into the
// node's ready/down state in the store.
//
// Flow: agent --Session--> dispatcher (leader only; followers answer with the
// leader's address) --registers--> sessions map; the liveness loop (Run, leader
// only) compares sessions, heartbeats and gossip with each node's stored state
// and writes the differences through Raft in one batch per tick.
package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/allocator"
	"shoal/manager/ca"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// DefaultHeartbeatPeriod is used when the cluster spec does not set one.
const DefaultHeartbeatPeriod = time.Second

// MissedHeartbeats is how many heartbeat periods a session may stay silent
// before its node is marked down ("heartbeat failure"); a new leader also
// waits that long for a node to open a session before marking it down.
const MissedHeartbeats = 3

// Store is what the dispatcher needs of the replicated store.
type Store interface {
	View(fn func(tx state.ReadTx))
	Propose(ctx context.Context, actions ...*shoalpb.StoreAction) (uint64, error)
	Watch(ctx context.Context) <-chan state.Event
}

// Cluster tells the dispatcher about the rest of the cluster.
type Cluster interface {
	// LeaderAPIAddr is the leader's gRPC address, "" when unknown.
	LeaderAPIAddr() string
	// Managers lists how to reach every manager.
	Managers() []*shoalpb.ManagerAddr
	// GossipDead reports whether gossip has declared the node dead.
	GossipDead(nodeID string) bool
}

// Config wires a Dispatcher.
type Config struct {
	Store   Store
	Cluster Cluster
	Logger  *slog.Logger
	// Tick is how often liveness is evaluated; default 200ms.
	Tick time.Duration
}

// Dispatcher implements shoalpb.DispatcherServer.
type Dispatcher struct {
	shoalpb.UnimplementedDispatcherServer
	cfg Config
	log *slog.Logger

	// mu guards the fields below. Lookups (routing a task event, finding the
	// session of a heartbeat) share it, so a thousand sessions' requests do
	// not queue behind each other; registering and judging sessions take it
	// alone.
	mu          sync.RWMutex
	active      bool
	leaderSince time.Time
	sessions    map[string]*session // by node ID
	byID        map[string]*session // by session ID
	kick        chan struct{}
	writing     chan struct{} // cap 1: holds a token while node states are written
	reports     chan *statusReport

	peers     peerTable     // the nodes with a task subnet, for session messages
	endpoints endpointTable // services and ready tasks, for Endpoints streams
}

type session struct {
	id            string
	nodeID        string
	addr          string
	description   *shoalpb.NodeDescription
	lastHeartbeat atomic.Int64 // UnixNano; written without the dispatcher's mu
	ended         time.Time    // zero while the stream is open
	notify        chan struct{}
	assign        *assignQueue
	closed        chan struct{}
	closeOnce     sync.Once
	// portErrors is the node's last reported set of ports it cannot serve;
	// nil until its first heartbeat, when the stored set is kept.
	portErrors atomic.Pointer[[]*shoalpb.PortError]
}

func (s *session) close() { s.closeOnce.Do(func() { close(s.closed) }) }

func (s *session) beat(at time.Time) { s.lastHeartbeat.Store(at.UnixNano()) }

func (s *session) lastBeat() time.Time { return time.Unix(0, s.lastHeartbeat.Load()) }

func (s *session) poke() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// New returns a dispatcher that refuses sessions until Run is called.
func New(cfg Config) *Dispatcher {
	if cfg.Tick == 0 {
		cfg.Tick = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Dispatcher{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "dispatcher"),
		sessions: map[string]*session{},
		byID:     map[string]*session{},
		kick:     make(chan struct{}, 1),
		writing:  make(chan struct{}, 1),
		reports:  make(chan *statusReport),
	}
}

func (d *Dispatcher) heartbeatPeriod() time.Duration {
	period := DefaultHeartbeatPeriod
	d.cfg.Store.View(func(tx state.ReadTx) {
		if c := tx.Cluster(); c != nil && c.Spec.GetHeartbeatPeriodMs() > 0 {
			period = time.Duration(c.Spec.HeartbeatPeriodMs) * time.Millisecond
		}
	})
	return period
}

func (d *Dispatcher) notLeader() error {
	addr := d.cfg.Cluster.LeaderAPIAddr()
	if addr == "" {
		return status.Error(codes.Unavailable, "this manager is not the leader and no leader is known yet; retry shortly")
	}
	// The agent reads the leader's address from this message (worker.leaderHint).
	return status.Errorf(codes.FailedPrecondition, "not the leader; the leader is at %s", addr)
}

// Session implements the session stream.
func (d *Dispatcher) Session(req *shoalpb.SessionRequest, stream grpc.ServerStreamingServer[shoalpb.SessionMessage]) error {
	id, ok := ca.PeerIdentity(stream.Context())
	if !ok || id.Role == ca.RoleClient {
		return status.Error(codes.PermissionDenied, "a session needs a node certificate")
	}
	if err := d.checkNode(id.NodeID); err != nil {
		return err
	}
	sess, err := d.register(id.NodeID, req)
	if err != nil {
		return err
	}
	defer d.unregister(sess)
	d.kickLiveness()

	for {
		msg, err := d.sessionMessage(sess)
		if err != nil {
			return err
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-sess.closed:
			return status.Error(codes.Unavailable, "session closed by the dispatcher; reconnect")
		case <-sess.notify:
		}
	}
}

func (d *Dispatcher) checkNode(nodeID string) error {
	var err error
	d.cfg.Store.View(func(tx state.ReadTx) {
		if c := tx.Cluster(); c != nil {
			for _, removed := range c.RemovedNodes {
				if removed == nodeID {
					err = status.Error(codes.PermissionDenied, "this node was removed from the cluster; wipe its data dir and join again with a token")
					return
				}
			}
		}
		if tx.Node(nodeID) == nil {
			err = status.Errorf(codes.NotFound, "node %s is not part of this cluster", nodeID)
		}
	})
	return err
}

func (d *Dispatcher) register(nodeID string, req *shoalpb.SessionRequest) (*session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return nil, d.notLeader()
	}
	if old := d.sessions[nodeID]; old != nil {
		delete(d.byID, old.id)
		old.close()
	}
	sess := &session{
		id:          newSessionID(),
		nodeID:      nodeID,
		addr:        req.GetAddr(),
		description: req.GetDescription(),
		notify:      make(chan struct{}, 1),
		assign:      newAssignQueue(),
		closed:      make(chan struct{}),
	}
	sess.beat(time.Now())
	d.sessions[nodeID] = sess
	d.byID[sess.id] = sess
	return sess, nil
}

func (d *Dispatcher) unregister(sess *session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sess.ended = time.Now()
	delete(d.byID, sess.id)
	d.kickLiveness()
}

func (d *Dispatcher) sessionMessage(sess *session) (*shoalpb.SessionMessage, error) {
	var node *shoalpb.Node
	var pool string
	var networks []*shoalpb.Network
	d.cfg.Store.View(func(tx state.ReadTx) {
		if n := tx.Node(sess.nodeID); n != nil {
			node = proto.Clone(n).(*shoalpb.Node)
		}
		if p, err := allocator.PoolOf(tx.Cluster().GetSpec()); err == nil {
			pool = p.String()
		}
		networks = append([]*shoalpb.Network{allocator.DefaultNetwork(tx.Cluster().GetSpec())}, tx.Networks()...)
	})
	if node == nil {
		return nil, status.Error(codes.PermissionDenied, "this node was removed from the cluster; wipe its data dir and join again with a token")
	}
	return &shoalpb.SessionMessage{
		SessionId:         sess.id,
		Managers:          d.cfg.Cluster.Managers(),
		HeartbeatPeriodMs: d.heartbeatPeriod().Milliseconds(),
		Node:              node,
		Peers:             d.peers.others(sess.nodeID),
		TaskPool:          pool,
		Networks:          networks,
	}, nil
}

// Heartbeat records that a session is alive.
func (d *Dispatcher) Heartbeat(ctx context.Context, req *shoalpb.HeartbeatRequest) (*shoalpb.HeartbeatResponse, error) {
	sess, err := d.sessionFor(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	sess.beat(time.Now())
	d.recordPortErrors(sess, req.GetPortErrors())
	return &shoalpb.HeartbeatResponse{HeartbeatPeriodMs: d.heartbeatPeriod().Milliseconds()}, nil
}

// kickLiveness makes the liveness loop evaluate the nodes now.
func (d *Dispatcher) kickLiveness() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run serves sessions while ctx lives; call it only on the leader. It keeps
// every node's ready/down state in the store, gives containerd nodes their
// task subnets (evaluate), and pushes node changes to their sessions: a
// node's own changes to its session, a change of any node's subnet or
// address (the peers) to every session. When ctx ends every session is closed so agents move to the next
// leader.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.resetPeers()
	d.resetEndpoints()
	d.mu.Lock()
	d.active = true
	d.leaderSince = time.Now()
	d.mu.Unlock()
	defer d.deactivate()
	var writers sync.WaitGroup
	defer writers.Wait()
	writers.Go(func() { d.writeStatuses(ctx) })

	events := d.cfg.Store.Watch(ctx)
	ticker := time.NewTicker(d.cfg.Tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				events = d.cfg.Store.Watch(ctx)
				d.resetPeers()
				d.resetEndpoints()
				d.requestComplete()
				d.pokeAll()
				continue
			}
			d.onEvent(ev)
		case <-d.kick:
			d.evaluate(ctx, &writers)
		case <-ticker.C:
			d.evaluate(ctx, &writers)
		}
	}
}

func (d *Dispatcher) deactivate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active = false
	for _, s := range d.sessions {
		s.close()
	}
	d.sessions = map[string]*session{}
	d.byID = map[string]*session{}
}

func (d *Dispatcher) pokeAll() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, s := range d.sessions {
		s.poke()
	}
}

func (d *Dispatcher) onEvent(ev state.Event) {
	d.endpoints.onEvent(ev)
	switch obj := ev.Object.(type) {
	case *shoalpb.Task:
		d.routeTask(ev, obj)
	case *shoalpb.Node:
		peersChanged := d.peers.update(obj, ev.Kind == state.EventDelete)
		if peersChanged || obj.GetRole() == shoalpb.NodeRole_NODE_ROLE_MANAGER || ev.Kind == state.EventDelete {
			d.pokeAll()
			return
		}
		d.mu.RLock()
		if s := d.sessions[obj.Id]; s != nil {
			s.poke()
		}
		d.mu.RUnlock()
	case *shoalpb.Network:
		d.pokeAll() // every node makes its slice of every network
	default:
		if ev.Kind == state.EventReset {
			d.resetPeers()
			d.resetEndpoints()
			d.requestComplete()
			d.pokeAll()
		}
	}
}

// verdict is the state a node should have, with the reason shown to users.
type verdict struct {
	state   shoalpb.NodeState
	message string
	sess    *session
}

// judge decides one node's state. It must be called with d.mu held.
func (d *Dispatcher) judge(nodeID string, now time.Time, period time.Duration) verdict {
	sess := d.sessions[nodeID]
	gossipDead := d.cfg.Cluster.GossipDead(nodeID)
	switch {
	case sess == nil:
		if now.Sub(d.leaderSince) < MissedHeartbeats*period {
			return verdict{state: shoalpb.NodeState_NODE_STATE_UNKNOWN}
		}
		return verdict{state: shoalpb.NodeState_NODE_STATE_DOWN, message: "no session with the leader"}
	case !sess.ended.IsZero():
		if now.Sub(sess.ended) < period {
			return verdict{state: shoalpb.NodeState_NODE_STATE_UNKNOWN}
		}
		return verdict{state: shoalpb.NodeState_NODE_STATE_DOWN, message: "session ended"}
	case now.Sub(sess.lastBeat()) > MissedHeartbeats*period:
		return verdict{state: shoalpb.NodeState_NODE_STATE_DOWN, message: "heartbeat failure", sess: sess}
	case gossipDead && now.Sub(sess.lastBeat()) > period:
		return verdict{state: shoalpb.NodeState_NODE_STATE_DOWN, message: "unreachable (gossip)", sess: sess}
	}
	return verdict{state: shoalpb.NodeState_NODE_STATE_READY, sess: sess}
}

// evaluate writes every node whose state differs from its verdict, in one
// command. The write runs on a goroutine of writers, so that the loop keeps
// routing events while it commits; until it has, evaluations are skipped, as
// they would read the nodes it is changing. A conflict with a concurrent
// write is retried at once, anything else on the next tick.
func (d *Dispatcher) evaluate(ctx context.Context, writers *sync.WaitGroup) {
	select {
	case d.writing <- struct{}{}:
	default:
		return // a write is in flight
	}
	period := d.heartbeatPeriod()
	now := time.Now()
	var nodes []*shoalpb.Node
	var spec *shoalpb.ClusterSpec
	d.cfg.Store.View(func(tx state.ReadTx) {
		nodes = tx.Nodes()
		spec = tx.Cluster().GetSpec()
	})
	subnets := subnetAssigner{spec: spec, nodes: nodes}

	var actions []*shoalpb.StoreAction
	var stale []*session
	d.mu.Lock()
	for _, n := range nodes {
		v := d.judge(n.Id, now, period)
		if v.state == shoalpb.NodeState_NODE_STATE_UNKNOWN {
			continue
		}
		if v.state == shoalpb.NodeState_NODE_STATE_DOWN && v.sess != nil {
			stale = append(stale, v.sess)
		}
		// A containerd node gets its subnet with the description that
		// says it runs containerd: the write that makes it ready.
		var subnet string
		if v.state == shoalpb.NodeState_NODE_STATE_READY {
			desc := n.GetDescription()
			if v.sess != nil && v.sess.description != nil {
				desc = v.sess.description
			}
			if allocator.NeedsSubnet(desc, n.GetSubnet()) {
				subnet, v.message = subnets.assign(n, desc)
			}
		}
		upd := nodeUpdate(n, v, now)
		if subnet != "" {
			if upd == nil {
				upd = proto.Clone(n).(*shoalpb.Node)
			}
			upd.Subnet = subnet
			d.log.Info("assigning the node a task subnet", "node", n.Id, "subnet", subnet)
		} else if v.message != "" && upd != nil && v.state == shoalpb.NodeState_NODE_STATE_READY {
			d.log.Warn("node has no task subnet", "node", n.Id, "reason", v.message)
		}
		if upd != nil {
			actions = append(actions, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Node{Node: upd}})
		}
	}
	for _, s := range stale {
		if d.sessions[s.nodeID] == s {
			delete(d.sessions, s.nodeID)
			delete(d.byID, s.id)
		}
		s.close()
	}
	d.mu.Unlock()
	if len(actions) == 0 {
		<-d.writing
		return
	}
	writers.Go(func() {
		_, err := d.cfg.Store.Propose(ctx, actions...)
		<-d.writing
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, state.ErrVersionConflict) {
			d.kickLiveness()
			return
		}
		d.log.Warn("writing node states failed", "nodes", len(actions), "err", err)
	})
}

// resetPeers rebuilds the peer table from the store.
func (d *Dispatcher) resetPeers() {
	var nodes []*shoalpb.Node
	d.cfg.Store.View(func(tx state.ReadTx) { nodes = tx.Nodes() })
	d.peers.reset(nodes)
}

// nodeUpdate returns the updated copy of n when v changes anything, else nil.
func nodeUpdate(n *shoalpb.Node, v verdict, now time.Time) *shoalpb.Node {
	st := n.GetStatus()
	changed := st.GetState() != v.state || st.GetMessage() != v.message
	var addr string
	var desc *shoalpb.NodeDescription
	if v.sess != nil && v.state == shoalpb.NodeState_NODE_STATE_READY {
		addr, desc = v.sess.addr, v.sess.description
		if addr != "" && addr != st.GetAddr() {
			changed = true
		}
		if desc != nil && !proto.Equal(desc, n.GetDescription()) {
			changed = true
		}
	}
	ports, setPorts := wantPortErrors(v)
	if setPorts && !samePortErrors(st.GetPortErrors(), ports) {
		changed = true
	}
	if !changed {
		return nil
	}
	upd := proto.Clone(n).(*shoalpb.Node)
	if upd.Status == nil {
		upd.Status = &shoalpb.NodeStatus{}
	}
	upd.Status.State = v.state
	upd.Status.Message = v.message
	upd.Status.UpdatedAt = timestamppb.New(now)
	if addr != "" {
		upd.Status.Addr = addr
	}
	if desc != nil {
		upd.Description = desc
	}
	if setPorts {
		upd.Status.PortErrors = ports
	}
	return upd
}

func newSessionID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}
