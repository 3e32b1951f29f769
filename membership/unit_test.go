package membership

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestConfigValidation(t *testing.T) {
	good := Config{NodeID: "n1", BindAddr: "127.0.0.1", Key: testKey, Meta: worker}
	cases := []struct {
		name   string
		change func(*Config)
		want   error
		field  string
	}{
		{"no node id", func(c *Config) { c.NodeID = "" }, ErrInvalidConfig, "NodeID"},
		{"no bind addr", func(c *Config) { c.BindAddr = "" }, ErrInvalidConfig, "BindAddr"},
		{"wildcard bind addr", func(c *Config) { c.BindAddr = "0.0.0.0" }, ErrInvalidConfig, "BindAddr"},
		{"short key", func(c *Config) { c.Key = testKey[:16] }, ErrInvalidConfig, "Key"},
		{"bad port", func(c *Config) { c.Port = 70000 }, ErrInvalidConfig, "Port"},
		{"probe timeout too long", func(c *Config) { c.ProbeTimeout = time.Second }, ErrInvalidConfig, "ProbeTimeout"},
		{"bad role", func(c *Config) { c.Meta.Role = "" }, ErrInvalidMeta, "Role"},
		{"bad api addr", func(c *Config) { c.Meta.APIAddr = "nohost" }, ErrInvalidMeta, "APIAddr"},
		{"huge meta", func(c *Config) { c.Meta.APIAddr = strings.Repeat("a", 500) + ":1" }, ErrMetaTooLarge, "APIAddr"},
	}
	for _, tc := range cases {
		cfg := good
		tc.change(&cfg)
		_, err := New(cfg)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.field) {
			t.Fatalf("%s: New() = %v; want %v naming %s", tc.name, err, tc.want, tc.field)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Config{NodeID: "n1", BindAddr: "10.0.0.5", Key: testKey}.withDefaults()
	if err != nil {
		t.Fatalf("withDefaults: %v", err)
	}
	if cfg.Port != DefaultPort || cfg.addr() != "10.0.0.5:7946" {
		t.Fatalf("port %d, addr %s", cfg.Port, cfg.addr())
	}
	mc := cfg.memberlistConfig(&delegate{}, nil)
	if mc.ProbeInterval != 500*time.Millisecond || mc.ProbeTimeout != 250*time.Millisecond ||
		mc.SuspicionMult != 3 || mc.SuspicionMaxTimeoutMult != 2 ||
		mc.GossipInterval != 100*time.Millisecond || mc.DeadNodeReclaimTime != time.Second {
		t.Fatalf("memberlist config = %+v", mc)
	}
}

func TestWithDefaultPort(t *testing.T) {
	cases := []struct{ in, want string }{
		{"10.0.0.5", "10.0.0.5:7946"},
		{"10.0.0.5:8000", "10.0.0.5:8000"},
		{"::1", "[::1]:7946"},
		{"[::1]:8000", "[::1]:8000"},
		{"node-a", "node-a:7946"},
		{"", ""},
		{"10.0.0.5:x", ""},
		{":8000", ""},
	}
	for _, tc := range cases {
		got, err := withDefaultPort(tc.in)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrJoin) {
				t.Fatalf("withDefaultPort(%q) = %q, %v; want ErrJoin", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Fatalf("withDefaultPort(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	in := Meta{Role: RoleManager, APIAddr: "10.0.0.5:2377"}
	b, err := encodeMeta(in, "0123456789abcdef")
	if err != nil {
		t.Fatalf("encodeMeta: %v", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		t.Fatalf("encoded meta is %d bytes", len(b))
	}
	out, boot, err := decodeMeta(b)
	if err != nil || out != in || boot != "0123456789abcdef" {
		t.Fatalf("decodeMeta(%s) = %+v, %q, %v", b, out, boot, err)
	}
	if _, _, err := decodeMeta([]byte("garbage")); err == nil {
		t.Fatalf("decodeMeta(garbage) succeeded")
	}
}

func TestLeaveIntentRoundTrip(t *testing.T) {
	li := leaveIntent{Node: "n1", Boot: "b1"}
	got, ok := decodeLeaveIntent(encodeLeaveIntent(li))
	if !ok || got != li {
		t.Fatalf("decodeLeaveIntent = %+v, %v", got, ok)
	}
	for _, msg := range [][]byte{nil, {msgLeaveIntent}, {99, '{', '}'}, append([]byte{msgLeaveIntent}, "{}"...)} {
		if _, ok := decodeLeaveIntent(msg); ok {
			t.Fatalf("decodeLeaveIntent(%q) accepted", msg)
		}
	}
}

func TestTableStatesAndOverflow(t *testing.T) {
	tb := newTable(testLogger(), 2)
	tb.join("a", "10.0.0.1:7946", worker, "boot-a")
	tb.join("b", "10.0.0.2:7946", worker, "boot-b")
	tb.join("c", "10.0.0.3:7946", worker, "boot-c") // buffer full: dropped
	if tb.dropped.Load() != 1 || tb.alive.Load() != 3 {
		t.Fatalf("dropped %d, alive %d; want 1, 3", tb.dropped.Load(), tb.alive.Load())
	}
	<-tb.events
	<-tb.events

	if tb.markLeaving(leaveIntent{Node: "b", Boot: "old-boot"}) {
		t.Fatalf("a stale intent was accepted")
	}
	if !tb.markLeaving(leaveIntent{Node: "b", Boot: "boot-b"}) || tb.markLeaving(leaveIntent{Node: "b", Boot: "boot-b"}) {
		t.Fatalf("intent should be news exactly once")
	}
	tb.depart("a")
	tb.depart("b")
	tb.depart("b") // repeated: no second event
	if ev := <-tb.events; ev.Kind != EventLeave || ev.Member.State != StateDead {
		t.Fatalf("a's event = %+v", ev)
	}
	if ev := <-tb.events; ev.Kind != EventLeave || ev.Member.State != StateLeft {
		t.Fatalf("b's event = %+v", ev)
	}
	if tb.alive.Load() != 1 {
		t.Fatalf("alive = %d, want 1", tb.alive.Load())
	}

	// An intent arriving after the death relabels the member as left.
	if !tb.markLeaving(leaveIntent{Node: "a", Boot: "boot-a"}) {
		t.Fatalf("late intent rejected")
	}
	if m, _ := tb.get("a"); m.State != StateLeft {
		t.Fatalf("a is %v after a late intent, want left", m.State)
	}

	// A restart (new boot) clears the leaving mark: its next failure is a death.
	tb.join("b", "10.0.0.2:7946", worker, "boot-b2")
	<-tb.events
	tb.depart("b")
	if ev := <-tb.events; ev.Member.State != StateDead {
		t.Fatalf("restarted b departed as %v, want dead", ev.Member.State)
	}

	tb.close()
	tb.close()
	tb.join("d", "10.0.0.4:7946", worker, "boot-d") // after close: table only
	if _, ok := tb.get("d"); !ok {
		t.Fatalf("table not updated after close")
	}
}
