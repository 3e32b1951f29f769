package dispatcher

import (
	"testing"
	"time"

	shoalpb "shoal/proto"
)

type fakeCluster struct{ dead map[string]bool }

func (f fakeCluster) LeaderAPIAddr() string            { return "" }
func (f fakeCluster) Managers() []*shoalpb.ManagerAddr { return nil }
func (f fakeCluster) GossipDead(nodeID string) bool    { return f.dead[nodeID] }

func TestJudge(t *testing.T) {
	const period = time.Second
	now := time.Unix(1000, 0)
	open := func(lastHeartbeat time.Duration) *session {
		s := &session{nodeID: "n"}
		s.beat(now.Add(-lastHeartbeat))
		return s
	}
	ended := func(ago time.Duration) *session {
		s := open(ago)
		s.ended = now.Add(-ago)
		return s
	}
	cases := []struct {
		name        string
		sess        *session
		leaderFor   time.Duration
		gossipDead  bool
		wantState   shoalpb.NodeState
		wantMessage string
	}{
		{"fresh session", open(0), time.Minute, false, shoalpb.NodeState_NODE_STATE_READY, ""},
		{"heartbeat within three periods", open(2 * period), time.Minute, false, shoalpb.NodeState_NODE_STATE_READY, ""},
		{"heartbeat lapsed", open(4 * period), time.Minute, false, shoalpb.NodeState_NODE_STATE_DOWN, "heartbeat failure"},
		{"gossip dead but heartbeat fresh", open(period / 2), time.Minute, true, shoalpb.NodeState_NODE_STATE_READY, ""},
		{"gossip dead and heartbeat late", open(2 * period), time.Minute, true, shoalpb.NodeState_NODE_STATE_DOWN, "unreachable (gossip)"},
		{"session just ended", ended(period / 2), time.Minute, false, shoalpb.NodeState_NODE_STATE_UNKNOWN, ""},
		{"session ended a period ago", ended(2 * period), time.Minute, false, shoalpb.NodeState_NODE_STATE_DOWN, "session ended"},
		{"no session, new leader", nil, period, false, shoalpb.NodeState_NODE_STATE_UNKNOWN, ""},
		{"no session, leader for a while", nil, time.Minute, false, shoalpb.NodeState_NODE_STATE_DOWN, "no session with the leader"},
	}
	for _, c := range cases {
		d := New(Config{Cluster: fakeCluster{dead: map[string]bool{"n": c.gossipDead}}})
		d.leaderSince = now.Add(-c.leaderFor)
		if c.sess != nil {
			d.sessions["n"] = c.sess
		}
		v := d.judge("n", now, period)
		if v.state != c.wantState || v.message != c.wantMessage {
			t.Fatalf("%s: got %v %q, want %v %q", c.name, v.state, v.message, c.wantState, c.wantMessage)
		}
	}
}

func TestNodeUpdate(t *testing.T) {
	now := time.Unix(1000, 0)
	n := &shoalpb.Node{Id: "n", Status: &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_READY, Addr: "127.0.0.2:2377"}}
	if upd := nodeUpdate(n, verdict{state: shoalpb.NodeState_NODE_STATE_READY, sess: &session{addr: "127.0.0.2:2377"}}, now); upd != nil {
		t.Fatalf("unchanged node: got an update %v", upd)
	}
	upd := nodeUpdate(n, verdict{state: shoalpb.NodeState_NODE_STATE_DOWN, message: "session ended"}, now)
	if upd == nil || upd.Status.State != shoalpb.NodeState_NODE_STATE_DOWN || upd.Status.Message != "session ended" {
		t.Fatalf("down: got %v", upd)
	}
	if n.Status.State != shoalpb.NodeState_NODE_STATE_READY {
		t.Fatalf("nodeUpdate changed its input")
	}
	upd = nodeUpdate(n, verdict{state: shoalpb.NodeState_NODE_STATE_READY, sess: &session{addr: "127.0.0.9:2377"}}, now)
	if upd == nil || upd.Status.Addr != "127.0.0.9:2377" {
		t.Fatalf("new address: got %v", upd)
	}
}
