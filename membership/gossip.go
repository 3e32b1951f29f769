package membership

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// EventBuffer is the capacity of the Events channel.
const EventBuffer = 256

const (
	// updateTimeout bounds UpdateMeta's wait for its broadcast to go out.
	updateTimeout = 5 * time.Second
	// defaultLeaveTimeout is used by Leave when given no timeout.
	defaultLeaveTimeout = 5 * time.Second
)

var (
	// ErrShutdown is returned by methods that need the network after Shutdown.
	ErrShutdown = errors.New("membership: gossip is shut down")
	// ErrLeft is returned by Join and UpdateMeta after Leave: announcing
	// ourselves again would undo the leave. Shut down and create a new Gossip.
	ErrLeft = errors.New("membership: node has left the gossip cluster")
	// ErrJoin is wrapped by Join's error when no address could be joined.
	ErrJoin = errors.New("membership: cannot join")
)

// lifecycle of a Gossip.
const (
	running int32 = iota
	left
	shutDown
)

// Gossip is this node's membership in the cluster's gossip. It is safe for
// concurrent use. Reads (Members, Managers, Alive) are served from a local
// table and never wait on the network.
type Gossip struct {
	cfg  Config
	addr string
	boot string
	ml   *memberlist.Memberlist
	d    *delegate
	t    *table

	// lifeMu serialises Leave and Shutdown: memberlist panics on a Leave
	// after Shutdown.
	lifeMu sync.Mutex
	life   atomic.Int32
	// updateMu keeps concurrent UpdateMeta calls from interleaving the
	// stored meta and its broadcast.
	updateMu sync.Mutex
}

// New starts gossiping: it binds UDP and TCP on cfg.BindAddr:cfg.Port and
// makes the local node a member of a one-node cluster; call Join to meet the
// others. The Events channel receives the local node's own EventJoin first.
// A bind failure names the address. The caller must call Shutdown.
func New(cfg Config) (*Gossip, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	boot := newBootID()
	meta, err := encodeMeta(cfg.Meta, boot)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "membership", "self", cfg.NodeID)
	g := &Gossip{cfg: cfg, addr: cfg.addr(), boot: boot, t: newTable(log, EventBuffer)}
	g.d = &delegate{
		t:     g.t,
		log:   log,
		meta:  meta,
		queue: &memberlist.TransmitLimitedQueue{NumNodes: g.numAlive, RetransmitMult: retransmitMult},
	}
	ml, err := memberlist.Create(cfg.memberlistConfig(g.d, slogWriter{log: log}))
	if err != nil {
		return nil, fmt.Errorf("membership: listen on %s (UDP and TCP): %s", g.addr, oneLine(err))
	}
	g.ml = ml
	return g, nil
}

// newBootID returns a random id for this life of the node.
func newBootID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

func (g *Gossip) numAlive() int { return int(g.t.alive.Load()) }

// Join contacts the given nodes, "IP:PORT" or "IP" (DefaultPort), and merges
// their view of the cluster into ours. It returns how many it reached; the
// error, which wraps ErrJoin, comes only when none could be reached. Nodes
// with another Key are not reachable. Joining one live node is enough: gossip
// spreads the rest.
func (g *Gossip) Join(addrs []string) (int, error) {
	switch g.life.Load() {
	case left:
		return 0, ErrLeft
	case shutDown:
		return 0, ErrShutdown
	}
	if len(addrs) == 0 {
		return 0, fmt.Errorf("%w: no addresses given", ErrJoin)
	}
	targets := make([]string, 0, len(addrs))
	for _, a := range addrs {
		t, err := withDefaultPort(a)
		if err != nil {
			return 0, err
		}
		targets = append(targets, t)
	}
	n, err := g.ml.Join(targets)
	if err != nil {
		return n, fmt.Errorf("%w %s: %s", ErrJoin, strings.Join(targets, ", "), oneLine(err))
	}
	return n, nil
}

// withDefaultPort returns addr as host:port, adding DefaultPort to a bare
// IP or host name.
func withDefaultPort(addr string) (string, error) {
	if ip := net.ParseIP(addr); ip != nil {
		return net.JoinHostPort(addr, strconv.Itoa(DefaultPort)), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if addr != "" && !strings.Contains(addr, ":") {
			return net.JoinHostPort(addr, strconv.Itoa(DefaultPort)), nil
		}
		return "", fmt.Errorf("%w: address %q: use IP:PORT or IP", ErrJoin, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
		return "", fmt.Errorf("%w: address %q: use IP:PORT or IP", ErrJoin, addr)
	}
	return addr, nil
}

// Members returns every member the local node has heard of, itself included,
// whatever its state, sorted by NodeID. Dead and departed members stay listed
// until they rejoin, so a caller can tell "gone" from "never seen".
func (g *Gossip) Members() []Member {
	return g.t.snapshot(nil)
}

// Managers returns the alive members advertising Role "manager", the local
// node included if it is one, sorted by NodeID. It is a hint for finding an
// API endpoint; Raft decides who really is a manager.
func (g *Gossip) Managers() []Member {
	return g.t.snapshot(func(m Member) bool {
		return m.State == StateAlive && m.Meta.Role == RoleManager
	})
}

// Alive reports whether nodeID is a member currently believed alive.
func (g *Gossip) Alive(nodeID string) bool {
	m, ok := g.t.get(nodeID)
	return ok && m.State == StateAlive
}

// LocalAddr returns the gossip address this node binds and advertises,
// "IP:PORT"; give it to other nodes' Join.
func (g *Gossip) LocalAddr() string { return g.addr }

// Events returns the channel of member changes, in the order they happened.
// It holds EventBuffer events; when the consumer falls behind, new events are
// dropped (never blocking memberlist) and counted in Dropped, so a consumer
// that must not miss a change resyncs from Members when Dropped grows.
// The channel is closed by Shutdown.
func (g *Gossip) Events() <-chan Event { return g.t.events }

// Dropped returns how many events were dropped because Events was full.
func (g *Gossip) Dropped() uint64 { return g.t.dropped.Load() }

// UpdateMeta replaces the advertised Meta. It returns once the change is
// applied locally and its broadcast has been sent; if that takes more than a
// few seconds it returns an error, but the new Meta still spreads (it also
// rides every push/pull). Each peer emits an EventUpdate.
func (g *Gossip) UpdateMeta(m Meta) error {
	g.updateMu.Lock()
	defer g.updateMu.Unlock()
	switch g.life.Load() {
	case left:
		return ErrLeft
	case shutDown:
		return ErrShutdown
	}
	b, err := encodeMeta(m, g.boot)
	if err != nil {
		return err
	}
	g.d.setMeta(b)
	if err := g.ml.UpdateNode(updateTimeout); err != nil {
		return fmt.Errorf("membership: update meta: %w", err)
	}
	return nil
}

// Leave announces a graceful departure and waits up to timeout (≤ 0 means 5 s)
// for the announcement to go out. Peers that hear it record the node as
// StateLeft; one that misses it records StateDead. After Leave the node still
// answers probes, so peers do not suspect it; call Shutdown next. Join and
// UpdateMeta then return ErrLeft. Calling Leave again is a no-op.
func (g *Gossip) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultLeaveTimeout
	}
	deadline := time.Now().Add(timeout)
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	switch g.life.Load() {
	case left:
		return nil
	case shutDown:
		return ErrShutdown
	}
	g.life.Store(left)

	li := leaveIntent{Node: g.cfg.NodeID, Boot: g.boot}
	g.t.markLeaving(li)
	if g.numAlive() > 1 {
		// Send the intent ahead of memberlist's dead message, so that peers
		// know the departure is a leave when they hear of it.
		sent := make(chan struct{})
		g.d.queue.QueueBroadcast(newIntentBroadcast(li, sent))
		wait := time.NewTimer(timeout / 2)
		select {
		case <-sent:
		case <-wait.C:
			g.t.log.Debug("leave intent not fully sent before the leave; some peers may record the node dead")
		}
		wait.Stop()
	}
	// memberlist treats 0 as "wait forever".
	rest := max(time.Until(deadline), time.Millisecond)
	if err := g.ml.Leave(rest); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossiping and closes the sockets and the Events channel.
// Without a prior Leave, peers see the node die, exactly as if it had been
// killed. It is idempotent; the read methods keep answering from the last
// known table.
func (g *Gossip) Shutdown() error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.life.Swap(shutDown) == shutDown {
		return nil
	}
	err := g.ml.Shutdown()
	g.t.close()
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

// oneLine flattens memberlist's multi-line errors (go-multierror) for logs.
func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	s = strings.ReplaceAll(s, ":\n\t* ", ": ")
	s = strings.ReplaceAll(s, "\n\t* ", "; ")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
