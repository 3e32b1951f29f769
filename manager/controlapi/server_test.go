package controlapi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// fakeStore is an in-memory Store: enough to test validation and error
// mapping without Raft (the store has its own tests).
type fakeStore struct {
	state.ReadTx // services and tasks: not used by these tests
	cluster      *shoalpb.Cluster
	nodes        map[string]*shoalpb.Node
	members      []state.Member
	leader       string
	catchUpFn    func() error
	caughtUp     int
	proposeFn    func() error
	proposed     int
}

func (f *fakeStore) Cluster() *shoalpb.Cluster                { return f.cluster }
func (f *fakeStore) Node(id string) *shoalpb.Node             { return f.nodes[id] }
func (f *fakeStore) View(fn func(tx state.ReadTx))            { fn(f) }
func (f *fakeStore) Leader() (string, string)                 { return f.leader, "" }
func (f *fakeStore) Members() ([]state.Member, error)         { return f.members, nil }
func (f *fakeStore) Watch(context.Context) <-chan state.Event { return nil }

// Draft is not used by the node tests that run on fakeStore.
func (f *fakeStore) Draft(func(*state.Draft) error) ([]*shoalpb.StoreAction, error) {
	return nil, errors.New("fakeStore has no drafts")
}

func (f *fakeStore) Nodes() []*shoalpb.Node {
	out := make([]*shoalpb.Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

func (f *fakeStore) CatchUp(context.Context) error {
	f.caughtUp++
	if f.catchUpFn != nil {
		return f.catchUpFn()
	}
	return nil
}

func (f *fakeStore) Propose(_ context.Context, actions ...*shoalpb.StoreAction) (uint64, error) {
	if f.proposeFn != nil {
		if err := f.proposeFn(); err != nil {
			return 0, err
		}
	}
	f.proposed++
	for _, a := range actions {
		switch t := a.Target.(type) {
		case *shoalpb.StoreAction_Node:
			if a.Kind == shoalpb.StoreActionKind_STORE_ACTION_DELETE {
				delete(f.nodes, t.Node.Id)
			} else {
				f.nodes[t.Node.Id] = proto.Clone(t.Node).(*shoalpb.Node)
			}
		case *shoalpb.StoreAction_Cluster:
			f.cluster = proto.Clone(t.Cluster).(*shoalpb.Cluster)
		}
	}
	return uint64(f.proposed), nil
}

type alive map[string]bool

func (a alive) Alive(id string) bool { return a[id] }

func node(id, addr string, role shoalpb.NodeRole, st shoalpb.NodeState) *shoalpb.Node {
	return &shoalpb.Node{
		Id: id, Meta: &shoalpb.Meta{},
		Spec:        &shoalpb.NodeSpec{DesiredRole: role},
		Role:        role,
		Description: &shoalpb.NodeDescription{Hostname: "host-" + id},
		Status:      &shoalpb.NodeStatus{State: st, Addr: addr},
	}
}

// newFixture: managers m1 (self, leader) and m2, workers w1 (ready) and w2 (down).
func newFixture() (*Server, *fakeStore) {
	f := &fakeStore{
		cluster: &shoalpb.Cluster{Id: "c", Meta: &shoalpb.Meta{}},
		nodes: map[string]*shoalpb.Node{
			"m1aaa": node("m1aaa", "127.0.0.1:2377", shoalpb.NodeRole_NODE_ROLE_MANAGER, shoalpb.NodeState_NODE_STATE_READY),
			"m2bbb": node("m2bbb", "127.0.0.2:2377", shoalpb.NodeRole_NODE_ROLE_MANAGER, shoalpb.NodeState_NODE_STATE_READY),
			"w1ccc": node("w1ccc", "127.0.0.3:2377", shoalpb.NodeRole_NODE_ROLE_WORKER, shoalpb.NodeState_NODE_STATE_READY),
			"w2ccd": node("w2ccd", "127.0.0.4:2377", shoalpb.NodeRole_NODE_ROLE_WORKER, shoalpb.NodeState_NODE_STATE_DOWN),
		},
		members: []state.Member{{ID: "m1aaa", Addr: "127.0.0.1:2378", Voter: true}, {ID: "m2bbb", Addr: "127.0.0.2:2378", Voter: true}},
		leader:  "m1aaa",
	}
	s := New(Config{Store: f, Liveness: alive{"m2bbb": true}, NodeID: "m1aaa", DataDir: "/d"})
	return s, f
}

func TestResolveNode(t *testing.T) {
	s, f := newFixture()
	cases := []struct {
		ref, want, errPart string
		code               codes.Code
	}{
		{ref: "w1ccc", want: "w1ccc"},
		{ref: "w1", want: "w1ccc"},
		{ref: "self", want: "m1aaa"},
		{ref: "host-m2bbb", want: "m2bbb"},
		{ref: "127.0.0.3", want: "w1ccc"},
		{ref: "127.0.0.3:2377", want: "w1ccc"},
		{ref: "w", code: codes.InvalidArgument, errPart: "ambiguous: it matches w1ccc, w2ccd"},
		{ref: "zzz", code: codes.NotFound, errPart: `node "zzz" not found`},
		{ref: "", code: codes.InvalidArgument, errPart: "missing node"},
	}
	for _, c := range cases {
		n, err := s.resolveNode(f, c.ref)
		if c.errPart != "" {
			if status.Code(err) != c.code || !strings.Contains(err.Error(), c.errPart) {
				t.Fatalf("%q: got %v, want %s containing %q", c.ref, err, c.code, c.errPart)
			}
			continue
		}
		if err != nil || n.Id != c.want {
			t.Fatalf("%q: got %v %v, want %s", c.ref, n, err, c.want)
		}
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		setup   func(*fakeStore)
		call    func(*Server) error
		code    codes.Code
		errPart string
	}{
		{"demote last manager", func(f *fakeStore) {
			delete(f.nodes, "m2bbb")
			f.members = f.members[:1]
		}, func(s *Server) error {
			_, err := s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "m1aaa", DesiredRole: shoalpb.NodeRole_NODE_ROLE_WORKER})
			return err
		}, codes.FailedPrecondition, "it is the last manager"},
		{"demote when the rest lack quorum", func(f *fakeStore) {
			f.members = append(f.members, state.Member{ID: "m3", Addr: "x", Voter: true})
			f.nodes["m3"] = node("m3", "127.0.0.9:2377", shoalpb.NodeRole_NODE_ROLE_MANAGER, shoalpb.NodeState_NODE_STATE_DOWN)
		}, func(s *Server) error {
			_, err := s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "m2bbb", DesiredRole: shoalpb.NodeRole_NODE_ROLE_WORKER})
			return err
		}, codes.FailedPrecondition, "fewer than a quorum"},
		{"remove label that is not there", nil, func(s *Server) error {
			_, err := s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1ccc", LabelRm: []string{"zone"}})
			return err
		}, codes.InvalidArgument, `has no label "zone"`},
		{"rm a ready node", nil, func(s *Server) error {
			_, err := s.RemoveNode(ctx, &shoalpb.RemoveNodeRequest{Node: "w1ccc"})
			return err
		}, codes.FailedPrecondition, "--force"},
		{"rm a manager", nil, func(s *Server) error {
			_, err := s.RemoveNode(ctx, &shoalpb.RemoveNodeRequest{Node: "m2bbb", Force: true})
			return err
		}, codes.FailedPrecondition, "demote it first"},
		{"unknown filter", nil, func(s *Server) error {
			_, err := s.ListNodes(ctx, &shoalpb.ListNodesRequest{Filters: map[string]string{"colour": "red"}})
			return err
		}, codes.InvalidArgument, `unknown filter "colour"`},
		{"rotate without a role", nil, func(s *Server) error {
			_, err := s.RotateJoinToken(ctx, &shoalpb.RotateJoinTokenRequest{})
			return err
		}, codes.InvalidArgument, "'worker' or the 'manager'"},
		{"quorum lost", func(f *fakeStore) {
			f.proposeFn = func() error { return fmt.Errorf("propose: %w", state.ErrNoLeader) }
		}, func(s *Server) error {
			_, err := s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1ccc", LabelAdd: map[string]string{"a": "b"}})
			return err
		}, codes.Unavailable, "quorum lost: 1 of 2 managers are unreachable (a quorum needs 2)"},
		{"quorum lost before the read", func(f *fakeStore) {
			f.catchUpFn = func() error { return fmt.Errorf("catch up: %w", state.ErrNoLeader) }
		}, func(s *Server) error {
			_, err := s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1ccc", LabelAdd: map[string]string{"a": "b"}})
			return err
		}, codes.Unavailable, "quorum lost: 1 of 2 managers are unreachable (a quorum needs 2)"},
	}
	for _, c := range cases {
		s, f := newFixture()
		if c.setup != nil {
			c.setup(f)
		}
		before := proto.Clone(&shoalpb.Snapshot{Clusters: []*shoalpb.Cluster{f.cluster}, Nodes: f.Nodes()})
		err := c.call(s)
		if status.Code(err) != c.code || !strings.Contains(err.Error(), c.errPart) {
			t.Fatalf("%s: got %v, want %s containing %q", c.name, err, c.code, c.errPart)
		}
		after := &shoalpb.Snapshot{Clusters: []*shoalpb.Cluster{f.cluster}, Nodes: f.Nodes()}
		if !proto.Equal(before, after) {
			t.Fatalf("%s: the store changed", c.name)
		}
	}
}

func TestUpdateAndRemove(t *testing.T) {
	ctx := context.Background()
	s, f := newFixture()
	v, err := s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1", HasAvailability: true,
		Availability: shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN, LabelAdd: map[string]string{"zone": "eu"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Node.Spec; got.Availability != shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN || got.Labels["zone"] != "eu" {
		t.Fatalf("update: got %v", got)
	}
	if _, err := s.RemoveNode(ctx, &shoalpb.RemoveNodeRequest{Node: "w2ccd"}); err != nil {
		t.Fatalf("rm a down node: %v", err)
	}
	if f.nodes["w2ccd"] != nil || len(f.cluster.RemovedNodes) != 1 || f.cluster.RemovedNodes[0] != "w2ccd" {
		t.Fatalf("rm: node still there or not revoked: %v", f.cluster.RemovedNodes)
	}
	resp, err := s.ListNodes(ctx, &shoalpb.ListNodesRequest{Filters: map[string]string{"role": "manager"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range resp.Nodes {
		got[v.Node.Id] = v.ManagerStatus
	}
	if len(got) != 2 || got["m1aaa"] != ManagerLeader || got["m2bbb"] != ManagerReachable {
		t.Fatalf("manager statuses: got %v", got)
	}
}

// A read-modify-write that loses a version race catches up, re-reads and
// proposes again; every attempt starts with CatchUp.
func TestUpdateRetriesAfterConflict(t *testing.T) {
	s, f := newFixture()
	conflicts := 3
	f.proposeFn = func() error {
		if conflicts > 0 {
			conflicts--
			return fmt.Errorf("propose: %w", state.ErrVersionConflict)
		}
		return nil
	}
	v, err := s.UpdateNode(context.Background(), &shoalpb.UpdateNodeRequest{Node: "w1ccc", LabelAdd: map[string]string{"zone": "eu"}})
	if err != nil {
		t.Fatalf("update after 3 conflicts: %v", err)
	}
	if v.Node.Spec.Labels["zone"] != "eu" || f.proposed != 1 || f.caughtUp != 4 {
		t.Fatalf("labels %v after %d committed proposals and %d catch-ups; want zone=eu, 1 and 4", v.Node.Spec.Labels, f.proposed, f.caughtUp)
	}
}

// An update that keeps losing the race gives up with Aborted once it has
// tried for retryFor, and the store is unchanged.
func TestUpdateGivesUpAfterRetryFor(t *testing.T) {
	s, f := newFixture()
	now := time.Unix(1700000000, 0)
	s.cfg.Now = func() time.Time { now = now.Add(time.Second); return now }
	conflicts := 0
	f.proposeFn = func() error {
		conflicts++
		return fmt.Errorf("propose: %w", state.ErrVersionConflict)
	}
	_, err := s.UpdateNode(context.Background(), &shoalpb.UpdateNodeRequest{Node: "w1ccc", LabelAdd: map[string]string{"zone": "eu"}})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("update that always conflicts: got %v, want Aborted", err)
	}
	// The clock moves 1 s per reading, and an attempt reads it about twice.
	if most := int(retryFor / time.Second); conflicts < most/2 || conflicts > most || f.proposed != 0 {
		t.Fatalf("%d proposals, %d committed; want %d to %d, none committed", conflicts, f.proposed, most/2, most)
	}
}

func TestRetryBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: retryBackoffMin, 2: 2 * retryBackoffMin, 5: retryBackoffMax, 100: retryBackoffMax} {
		for range 100 {
			if d := retryBackoff(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: backoff %s, want within [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}
