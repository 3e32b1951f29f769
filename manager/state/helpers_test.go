package state

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	shoalpb "shoal/proto"
)

// tcpLayer is a plain TCP raft.StreamLayer.
type tcpLayer struct{ net.Listener }

func (l tcpLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// testLogHandler writes records to t.Log until the test ends.
type testLogHandler struct {
	slog.Handler
	mu   *sync.Mutex
	done *bool
	t    *testing.T
	buf  *strings.Builder
}

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	h := &testLogHandler{mu: new(sync.Mutex), done: new(bool), t: t, buf: new(strings.Builder)}
	h.Handler = slog.NewTextHandler(h.buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		*h.done = true
	})
	return slog.New(h)
}

func (h *testLogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *h.done {
		return nil
	}
	h.buf.Reset()
	if err := h.Handler.Handle(ctx, r); err != nil {
		return err
	}
	h.t.Log(strings.TrimSuffix(h.buf.String(), "\n"))
	return nil
}

func (h *testLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.Handler = h.Handler.WithAttrs(attrs)
	return &c
}

func (h *testLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.Handler = h.Handler.WithGroup(name)
	return &c
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testNode is one manager of a test cluster; it can be closed and reopened
// from its directory at the same address.
type testNode struct {
	id, dir, addr string
	store         atomic.Pointer[Store]
}

func (n *testNode) s() *Store { return n.store.Load() }

// testCluster holds nodes and routes forwarded commands to them in-process.
type testCluster struct {
	t     *testing.T
	log   *slog.Logger
	mu    sync.Mutex
	nodes map[string]*testNode
	// tune adjusts every node's Config before Open.
	tune func(*Config)
	// readIndexHook, if set, runs in every forwarded ReadIndex before the
	// leader answers.
	readIndexHook func()
}

func newTestCluster(t *testing.T, tune func(*Config)) *testCluster {
	return &testCluster{t: t, log: testLogger(t), nodes: map[string]*testNode{}, tune: tune}
}

// Forward implements Forwarder by calling the leader's ApplyCommand.
func (c *testCluster) Forward(ctx context.Context, leaderID, _ string, cmd []byte) (uint64, error) {
	s, err := c.store(leaderID)
	if err != nil {
		return 0, fmt.Errorf("forward: %w", err)
	}
	return s.ApplyCommand(ctx, cmd)
}

// ReadIndex implements Forwarder by calling the leader's ReadIndex; with
// readIndexHook set, it calls that first.
func (c *testCluster) ReadIndex(_ context.Context, leaderID, _ string) (uint64, error) {
	s, err := c.store(leaderID)
	if err != nil {
		return 0, fmt.Errorf("read index: %w", err)
	}
	c.mu.Lock()
	hook := c.readIndexHook
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s.ReadIndex()
}

// store returns node id's open store.
func (c *testCluster) store(id string) (*Store, error) {
	c.mu.Lock()
	n := c.nodes[id]
	c.mu.Unlock()
	if n == nil || n.s() == nil {
		return nil, fmt.Errorf("unknown node %s", id)
	}
	return n.s(), nil
}

// add creates a node with a fresh directory and address and opens it.
func (c *testCluster) add(id string, bootstrap bool) *testNode {
	c.t.Helper()
	n := &testNode{id: id, dir: c.t.TempDir()}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	c.open(n, func(cfg *Config) { cfg.Bootstrap = bootstrap })
	return n
}

// open (re)opens n's store; extra adjusts the Config.
func (c *testCluster) open(n *testNode, extra func(*Config)) {
	c.t.Helper()
	addr := n.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatalf("listen %s: %v", addr, err)
	}
	n.addr = ln.Addr().String()
	cfg := Config{
		NodeID:      n.id,
		Dir:         n.dir,
		Addr:        n.addr,
		StreamLayer: tcpLayer{ln},
		Forwarder:   c,
		Logger:      c.log,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	if extra != nil {
		extra(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		_ = ln.Close()
		c.t.Fatalf("open %s: %v", n.id, err)
	}
	n.store.Store(s)
	c.t.Cleanup(func() { _ = s.Close() })
}

// join opens a node and adds it as a voter through the leader.
func (c *testCluster) join(id string) *testNode {
	c.t.Helper()
	leader := c.leader()
	n := c.add(id, false)
	if err := leader.s().AddVoter(context.Background(), n.id, n.addr); err != nil {
		c.t.Fatalf("add voter %s: %v", id, err)
	}
	return n
}

// leader waits until exactly one open node is leader and every open node
// agrees on it, and returns it.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var found *testNode
	waitFor(c.t, 10*time.Second, "a leader", func() bool {
		found = nil
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, n := range c.nodes {
			s := n.s()
			if s == nil || s.isClosed() || !s.IsLeader() {
				continue
			}
			if found != nil {
				return false
			}
			found = n
		}
		if found == nil {
			return false
		}
		for _, n := range c.nodes {
			if s := n.s(); s != nil && !s.isClosed() {
				if id, _ := s.Leader(); id != found.id {
					return false
				}
			}
		}
		return true
	})
	return found
}

// followers returns the open nodes other than leader.
func (c *testCluster) followers(leader *testNode) []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testNode
	for _, n := range c.nodes {
		if s := n.s(); n != leader && s != nil && !s.isClosed() {
			out = append(out, n)
		}
	}
	return out
}

func (n *testNode) close(t *testing.T) {
	t.Helper()
	if err := n.s().Close(); err != nil {
		t.Fatalf("close %s: %v", n.id, err)
	}
}

// waitApplied waits until n applied index.
func waitApplied(t *testing.T, n *testNode, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.s().WaitApplied(ctx, index); err != nil {
		t.Fatalf("%s: %v", n.id, err)
	}
}

func createNode(id string) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{
		Kind:   shoalpb.StoreActionKind_STORE_ACTION_CREATE,
		Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{Id: id}},
	}
}

func updateNode(n *shoalpb.Node) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{
		Kind:   shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
		Target: &shoalpb.StoreAction_Node{Node: n},
	}
}

func deleteNode(id string) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{
		Kind:   shoalpb.StoreActionKind_STORE_ACTION_DELETE,
		Target: &shoalpb.StoreAction_Node{Node: &shoalpb.Node{Id: id}},
	}
}

func createCluster(id string) *shoalpb.StoreAction {
	return &shoalpb.StoreAction{
		Kind:   shoalpb.StoreActionKind_STORE_ACTION_CREATE,
		Target: &shoalpb.StoreAction_Cluster{Cluster: &shoalpb.Cluster{Id: id, Spec: &shoalpb.ClusterSpec{Name: "test"}}},
	}
}

// nodeOf reads one node from s, nil if absent.
func nodeOf(s *Store, id string) *shoalpb.Node {
	var n *shoalpb.Node
	s.View(func(tx ReadTx) { n = tx.Node(id) })
	return n
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}
