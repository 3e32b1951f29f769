package membership

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
)

// Each test gets its own loopback /24 (127.0.<net>.x) and the default port,
// so tests run in parallel without port juggling.

var testKey = bytes.Repeat([]byte{0x5a}, KeySize)

// waitTimeout is generous: detection takes ~2 s, but -race on a busy machine
// slows everything down. Nothing asserts on durations.
const waitTimeout = 20 * time.Second

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

func manager(api string) Meta { return Meta{Role: RoleManager, APIAddr: api} }

var worker = Meta{Role: RoleWorker}

func startNode(t *testing.T, id, ip string, meta Meta, key []byte) *Gossip {
	t.Helper()
	return startTuned(t, Config{NodeID: id, BindAddr: ip, Key: key, Meta: meta})
}

// startTuned starts a node from cfg with the test logger.
func startTuned(t *testing.T, cfg Config) *Gossip {
	t.Helper()
	cfg.Logger = testLogger()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return g
}

// startCluster starts one node per meta on 127.0.<net>.1, .2, … named n1,
// n2, …, joins them through n1 and waits until every node sees every other
// alive with its Meta.
func startCluster(t *testing.T, net int, metas ...Meta) []*Gossip {
	t.Helper()
	return startClusterTuned(t, net, func(*Config) {}, metas...)
}

// startClusterTuned is startCluster with each node's Config passed through
// tune first.
func startClusterTuned(t *testing.T, net int, tune func(*Config), metas ...Meta) []*Gossip {
	t.Helper()
	gs := make([]*Gossip, len(metas))
	for i, m := range metas {
		cfg := Config{NodeID: fmt.Sprintf("n%d", i+1), BindAddr: fmt.Sprintf("127.0.%d.%d", net, i+1), Key: testKey, Meta: m}
		tune(&cfg)
		gs[i] = startTuned(t, cfg)
	}
	for _, g := range gs[1:] {
		if n, err := g.Join([]string{gs[0].LocalAddr()}); err != nil || n != 1 {
			t.Fatalf("Join(%s) = %d, %v", gs[0].LocalAddr(), n, err)
		}
	}
	for i, g := range gs {
		waitFor(t, fmt.Sprintf("n%d to see all %d nodes with their meta", i+1, len(gs)), func() bool {
			ms := g.Members()
			if len(ms) != len(gs) {
				return false
			}
			for j, m := range ms { // sorted by NodeID: n1, n2, … for fewer than 10
				if m.State != StateAlive || m.Meta != metas[j] {
					return false
				}
			}
			return true
		})
	}
	return gs
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
	}
}

// waitEvent reads g's events until one matches, and returns it.
func waitEvent(t *testing.T, g *Gossip, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-g.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for event: %s", waitTimeout, what)
		}
	}
}

func memberOf(t *testing.T, g *Gossip, id string) Member {
	t.Helper()
	for _, m := range g.Members() {
		if m.NodeID == id {
			return m
		}
	}
	t.Fatalf("%s is not in the members of %s", id, g.cfg.NodeID)
	return Member{}
}

func ids(ms []Member) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.NodeID
	}
	return strings.Join(s, ",")
}

func TestClusterSeesMembersAndMeta(t *testing.T) {
	t.Parallel()
	metas := []Meta{manager("127.0.70.1:2377"), manager("127.0.70.2:2377"), worker}
	gs := startCluster(t, 70, metas...)

	for _, g := range gs {
		ms := g.Members()
		for i, m := range ms {
			if want := fmt.Sprintf("127.0.70.%d:%d", i+1, DefaultPort); m.Addr != want {
				t.Fatalf("%s sees %s at %s, want %s", g.cfg.NodeID, m.NodeID, m.Addr, want)
			}
			if !g.Alive(m.NodeID) {
				t.Fatalf("%s: Alive(%s) = false", g.cfg.NodeID, m.NodeID)
			}
		}
		mgrs := g.Managers()
		if ids(mgrs) != "n1,n2" {
			t.Fatalf("%s: Managers() = %s, want n1,n2", g.cfg.NodeID, ids(mgrs))
		}
		if mgrs[1].Meta.APIAddr != "127.0.70.2:2377" {
			t.Fatalf("%s: n2 APIAddr = %q", g.cfg.NodeID, mgrs[1].Meta.APIAddr)
		}
		if g.Alive("nobody") {
			t.Fatalf("%s: Alive(nobody) = true", g.cfg.NodeID)
		}
	}
	if got := gs[0].LocalAddr(); got != "127.0.70.1:7946" {
		t.Fatalf("LocalAddr() = %s", got)
	}
	waitEvent(t, gs[0], "n1 sees n3 join", func(ev Event) bool {
		return ev.Kind == EventJoin && ev.Member.NodeID == "n3" && ev.Member.Meta == worker
	})
}

func TestUpdateMetaPropagates(t *testing.T) {
	t.Parallel()
	gs := startCluster(t, 71, manager("127.0.71.1:2377"), worker, worker)

	promoted := manager("127.0.71.3:2377")
	if err := gs[2].UpdateMeta(promoted); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	for _, g := range gs {
		waitFor(t, g.cfg.NodeID+" to see n3 as a manager", func() bool {
			return ids(g.Managers()) == "n1,n3"
		})
	}
	ev := waitEvent(t, gs[0], "update of n3", func(ev Event) bool {
		return ev.Kind == EventUpdate && ev.Member.NodeID == "n3"
	})
	if ev.Member.Meta != promoted || ev.Member.State != StateAlive {
		t.Fatalf("update event member = %+v", ev.Member)
	}

	if err := gs[2].UpdateMeta(Meta{Role: "boss"}); !errors.Is(err, ErrInvalidMeta) {
		t.Fatalf("UpdateMeta(role boss) = %v, want ErrInvalidMeta", err)
	}
}

func TestKilledNodeIsDeclaredDead(t *testing.T) {
	t.Parallel()
	gs := startCluster(t, 72, manager("127.0.72.1:2377"), manager("127.0.72.2:2377"), manager("127.0.72.3:2377"))

	killed := time.Now()
	if err := gs[2].Shutdown(); err != nil { // no Leave: as good as kill -9
		t.Fatalf("Shutdown: %v", err)
	}
	for _, g := range gs[:2] {
		ev := waitEvent(t, g, g.cfg.NodeID+" sees n3 leave", func(ev Event) bool {
			return ev.Kind == EventLeave && ev.Member.NodeID == "n3"
		})
		t.Logf("%s: n3 declared dead %v after the kill", g.cfg.NodeID, time.Since(killed).Round(time.Millisecond))
		if ev.Member.State != StateDead {
			t.Fatalf("%s: leave event state = %v, want dead", g.cfg.NodeID, ev.Member.State)
		}
		if g.Alive("n3") {
			t.Fatalf("%s: Alive(n3) after its death", g.cfg.NodeID)
		}
		if m := memberOf(t, g, "n3"); m.State != StateDead {
			t.Fatalf("%s: Members() has n3 %v, want dead", g.cfg.NodeID, m.State)
		}
		// A loaded machine can starve n1 or n2 long enough for the other
		// to suspect it for a moment; it refutes and is alive again.
		testutil.Eventually(t, 10*time.Second, func() error {
			if got := ids(g.Managers()); got != "n1,n2" {
				return fmt.Errorf("%s: Managers() = %s, want n1,n2", g.cfg.NodeID, got)
			}
			return nil
		})
	}
}

func TestLeaveIsStateLeft(t *testing.T) {
	t.Parallel()
	// A node that merely misses probes on a starved machine is suspected and
	// then declared dead by a peer, and that "dead" wins over its later leave
	// (CI under -race saw n2 report "dead"). This test is about leaving, not
	// failure detection, so the probes here are slow and patient.
	gs := startClusterTuned(t, 73, func(c *Config) {
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = 5*time.Second, 4*time.Second, 6
	}, manager("127.0.73.1:2377"), worker, worker)

	if err := gs[2].Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, g := range gs[:2] {
		ev := waitEvent(t, g, g.cfg.NodeID+" sees n3 leave", func(ev Event) bool {
			return ev.Kind == EventLeave && ev.Member.NodeID == "n3"
		})
		if ev.Member.State != StateLeft {
			t.Fatalf("%s: leave event state = %v, want left", g.cfg.NodeID, ev.Member.State)
		}
		if g.Alive("n3") {
			t.Fatalf("%s: Alive(n3) after it left", g.cfg.NodeID)
		}
	}
	if m := memberOf(t, gs[2], "n3"); m.State != StateLeft {
		t.Fatalf("n3 sees itself %v, want left", m.State)
	}
	if err := gs[2].Leave(time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if err := gs[2].UpdateMeta(worker); !errors.Is(err, ErrLeft) {
		t.Fatalf("UpdateMeta after Leave = %v, want ErrLeft", err)
	}
	if _, err := gs[2].Join([]string{gs[0].LocalAddr()}); !errors.Is(err, ErrLeft) {
		t.Fatalf("Join after Leave = %v, want ErrLeft", err)
	}
	if err := gs[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown after Leave: %v", err)
	}
	// Shutting the departed node down must not turn "left" into "dead".
	if m := memberOf(t, gs[0], "n3"); m.State != StateLeft {
		t.Fatalf("n1 sees n3 %v after its shutdown, want left", m.State)
	}
}

func TestOtherKeyCannotJoin(t *testing.T) {
	t.Parallel()
	gs := startCluster(t, 74, manager("127.0.74.1:2377"), worker)

	otherKey := bytes.Repeat([]byte{0x42}, KeySize)
	stranger := startNode(t, "stranger", "127.0.74.9", worker, otherKey)
	n, err := stranger.Join([]string{gs[0].LocalAddr(), "127.0.74.2"})
	if err == nil || n != 0 {
		t.Fatalf("Join with another key = %d, %v; want 0 and an error", n, err)
	}
	if !errors.Is(err, ErrJoin) || !strings.Contains(err.Error(), "127.0.74.2:7946") {
		t.Fatalf("Join error = %v; want ErrJoin naming the addresses", err)
	}
	t.Logf("join with another key: %v", err)
	for _, g := range gs {
		if ids(g.Members()) != "n1,n2" {
			t.Fatalf("%s: Members() = %s after a stranger's join", g.cfg.NodeID, ids(g.Members()))
		}
	}
	if ids(stranger.Members()) != "stranger" {
		t.Fatalf("stranger: Members() = %s", ids(stranger.Members()))
	}
}

func TestRestartedNodeRejoins(t *testing.T) {
	t.Parallel()
	gs := startCluster(t, 75, manager("127.0.75.1:2377"), worker, worker)

	if err := gs[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitEvent(t, gs[0], "n1 sees n3 die", func(ev Event) bool {
		return ev.Kind == EventLeave && ev.Member.NodeID == "n3"
	})

	restarted := startNode(t, "n3", "127.0.75.3", manager("127.0.75.3:2377"), testKey)
	if _, err := restarted.Join([]string{gs[0].LocalAddr()}); err != nil {
		t.Fatalf("Join after restart: %v", err)
	}
	ev := waitEvent(t, gs[0], "n1 sees n3 come back", func(ev Event) bool {
		return ev.Kind == EventJoin && ev.Member.NodeID == "n3"
	})
	if ev.Member.State != StateAlive {
		t.Fatalf("rejoin event state = %v", ev.Member.State)
	}
	waitFor(t, "n1 to see the restarted n3 as a manager", func() bool {
		return gs[0].Alive("n3") && ids(gs[0].Managers()) == "n1,n3"
	})
}

func TestShutdownIsIdempotentAndClosesEvents(t *testing.T) {
	t.Parallel()
	g := startNode(t, "solo", "127.0.76.1", worker, testKey)
	ev := waitEvent(t, g, "own join", func(ev Event) bool { return true })
	if ev.Kind != EventJoin || ev.Member.NodeID != "solo" {
		t.Fatalf("first event = %+v, want own join", ev)
	}
	for range 2 {
		if err := g.Shutdown(); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	if _, ok := <-g.Events(); ok {
		t.Fatalf("Events not closed after Shutdown")
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave after Shutdown = %v, want ErrShutdown", err)
	}
	if err := g.UpdateMeta(worker); !errors.Is(err, ErrShutdown) {
		t.Fatalf("UpdateMeta after Shutdown = %v, want ErrShutdown", err)
	}
	if ids(g.Members()) != "solo" {
		t.Fatalf("Members() after Shutdown = %s", ids(g.Members()))
	}
}

func TestNewNamesAddressInUse(t *testing.T) {
	t.Parallel()
	startNode(t, "first", "127.0.77.1", worker, testKey)
	_, err := New(Config{NodeID: "second", BindAddr: "127.0.77.1", Key: testKey, Meta: worker, Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), "127.0.77.1:7946") {
		t.Fatalf("New on a used address = %v; want an error naming 127.0.77.1:7946", err)
	}
	t.Logf("address in use: %v", err)
}
