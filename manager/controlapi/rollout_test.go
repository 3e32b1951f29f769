package controlapi

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

func webSpec(image string, replicas uint64) *shoalpb.ServiceSpec {
	return &shoalpb.ServiceSpec{Name: "web", Replicas: replicas, Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: image}}}
}

// mustService returns a check of a call that returns a service: the
// service, or the test fails.
func mustService(t *testing.T) func(*shoalpb.Service, error) *shoalpb.Service {
	return func(svc *shoalpb.Service, err error) *shoalpb.Service {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
}

// setUpdateStatus stores st as the service's update status, as the
// orchestrator would.
func setUpdateStatus(t *testing.T, s *Server, store *state.Store, ref string, st *shoalpb.UpdateStatus) {
	t.Helper()
	svc := proto.Clone(mustService(t)(s.GetService(context.Background(), &shoalpb.GetServiceRequest{Service: ref}))).(*shoalpb.Service)
	svc.UpdateStatus = st
	propose(t, store, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Service{Service: svc}})
}

// A stored spec has its update and rollback configs filled in; a change of
// the task spec starts a rollout, a change of replicas or config does not.
func TestUpdateStartsARolloutWhenTheTaskSpecChanges(t *testing.T) {
	must := mustService(t)
	s, _ := oneServer(t, nil)
	ctx := context.Background()
	svc := must(s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: webSpec("web:v1", 3)}))
	if !proto.Equal(svc.Spec.UpdateConfig, servicespec.DefaultUpdateConfig()) || !proto.Equal(svc.Spec.RollbackConfig, servicespec.DefaultUpdateConfig()) || svc.UpdateStatus != nil {
		t.Fatalf("created: update %v rollback %v status %v; want the defaults and no rollout", svc.Spec.UpdateConfig, svc.Spec.RollbackConfig, svc.UpdateStatus)
	}
	// A client that sends no configs changes nothing.
	same := must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: webSpec("web:v1", 3)}))
	if same.SpecVersion != 1 {
		t.Fatalf("an unchanged spec made version %d", same.SpecVersion)
	}
	scaled := must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: webSpec("web:v1", 5)}))
	if scaled.SpecVersion != 2 || scaled.UpdateStatus != nil {
		t.Fatalf("scaled: version %d status %v; want 2 and no rollout", scaled.SpecVersion, scaled.UpdateStatus)
	}
	at := time.Unix(1_800_000_000, 0)
	s.cfg.Now = func() time.Time { return at }
	spec := webSpec("web:v2", 5)
	spec.UpdateConfig = &shoalpb.UpdateConfig{Parallelism: 2, Order: shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST, MonitorMs: 1000}
	upd := must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: spec}))
	st := upd.UpdateStatus
	if st.GetState() != shoalpb.UpdateState_UPDATE_STATE_UPDATING || st.FromVersion != 2 || st.ToVersion != 3 || !st.StartedAt.AsTime().Equal(at) {
		t.Fatalf("update status %v; want updating from 2 to 3 at %v", st, at)
	}
	if kept := upd.PreviousSpecs; len(kept) != 2 || kept[0].Version != 2 || kept[1].Version != 1 || kept[0].Spec.Task.Container.Image != "web:v1" {
		t.Fatalf("kept specs %v; want versions 2, 1", kept)
	}
	if upd.Spec.UpdateConfig.Parallelism != 2 || !proto.Equal(upd.Spec.RollbackConfig, servicespec.DefaultUpdateConfig()) {
		t.Fatalf("configs %v / %v; want the given update config and the default rollback config", upd.Spec.UpdateConfig, upd.Spec.RollbackConfig)
	}
	// A label leaves the rollout's status alone.
	labelled := webSpec("web:v2", 5)
	labelled.UpdateConfig, labelled.Labels = spec.UpdateConfig, map[string]string{"team": "a"}
	if got := must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: labelled})); !proto.Equal(got.UpdateStatus, st) {
		t.Fatalf("label change: status %v, want %v", got.UpdateStatus, st)
	}
}

// Rollback returns to a kept spec in ROLLBACK_STARTED, during a canary too;
// an unknown version names the kept ones, and a refusal changes nothing.
func TestRollbackService(t *testing.T) {
	must := mustService(t)
	s, store := oneServer(t, nil)
	ctx := context.Background()
	if _, err := s.RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: "web"}); err == nil {
		t.Fatal("rollback of a missing service worked")
	}
	must(s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: webSpec("web:v1", 2)}))
	_, err := s.RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: "web"})
	wantStatus(t, "rollback without history", err, codes.FailedPrecondition, "no earlier spec")
	must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: webSpec("web:v2", 2)}))
	must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: webSpec("web:v3", 2)}))
	before := servicesOf(store)

	_, err = s.RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: "web", ToVersion: 7})
	wantStatus(t, "unknown version", err, codes.InvalidArgument, "--to-version 7", "keeps versions 2, 1", "the current one is 3")
	if after := servicesOf(store); !proto.Equal(after[0], before[0]) {
		t.Fatal("a refused rollback changed the service")
	}

	setUpdateStatus(t, s, store, "web", &shoalpb.UpdateStatus{State: shoalpb.UpdateState_UPDATE_STATE_CANARY, FromVersion: 2, ToVersion: 3})
	back := must(s.RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: "web"}))
	st := back.UpdateStatus
	if back.Spec.Task.Container.Image != "web:v2" || back.SpecVersion != 4 || st.GetState() != shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED ||
		st.FromVersion != 3 || st.ToVersion != 4 || st.Message != "rollback by hand" {
		t.Fatalf("rolled back: image %s version %d status %v; want web:v2, 4, rollback_started from 3 to 4 by hand", back.Spec.Task.Container.Image, back.SpecVersion, st)
	}
	first := must(s.RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: "web", ToVersion: 1}))
	if first.Spec.Task.Container.Image != "web:v1" || first.SpecVersion != 5 {
		t.Fatalf("--to-version 1: image %s version %d; want web:v1, 5", first.Spec.Task.Container.Image, first.SpecVersion)
	}
}

// A rollback gives the service the endpoint of the spec it returns to.
func TestRollbackRestoresTheEndpoint(t *testing.T) {
	must := mustService(t)
	s, _ := oneServer(t, nil)
	ctx := context.Background()
	must(s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: endpointSpec("web", shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR)}))
	vip := must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: endpointSpec("web", shoalpb.EndpointMode_ENDPOINT_MODE_VIP)}))
	if vip.GetEndpoint().GetVip() == "" {
		t.Fatal("vip mode: no VIP")
	}
	back := must(s.RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: "web"}))
	if back.GetEndpoint() != nil {
		t.Fatalf("rolled back to dnsrr: endpoint %v, want none", back.GetEndpoint())
	}
}

// A job is not rolled: an update or a rollback starts a new run.
func TestJobsStartANewRun(t *testing.T) {
	must := mustService(t)
	s, _ := oneServer(t, nil)
	ctx := context.Background()
	spec := webSpec("job:v1", 2)
	spec.Mode = shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB
	must(s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: spec}))
	spec = proto.Clone(spec).(*shoalpb.ServiceSpec)
	spec.Task.Container.Image = "job:v2"
	upd := must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: spec}))
	back := must(s.RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: "web"}))
	if upd.JobIteration != 2 || back.JobIteration != 3 || upd.UpdateStatus != nil || back.UpdateStatus != nil || back.Spec.Task.Container.Image != "job:v1" {
		t.Fatalf("iterations %d, %d, statuses %v, %v, image %s; want 2, 3, none and job:v1", upd.JobIteration, back.JobIteration, upd.UpdateStatus, back.UpdateStatus, back.Spec.Task.Container.Image)
	}
}

// Only an update in state CANARY is promoted.
func TestPromoteService(t *testing.T) {
	must := mustService(t)
	s, store := oneServer(t, nil)
	ctx := context.Background()
	must(s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: webSpec("web:v1", 3)}))
	_, err := s.PromoteService(ctx, &shoalpb.PromoteServiceRequest{Service: "web"})
	wantStatus(t, "promote without an update", err, codes.FailedPrecondition, "not waiting on canaries", "no update in progress", "--update-canary")
	must(s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "web", Spec: webSpec("web:v2", 3)}))
	_, err = s.PromoteService(ctx, &shoalpb.PromoteServiceRequest{Service: "web"})
	wantStatus(t, "promote while updating", err, codes.FailedPrecondition, "its update is updating")

	setUpdateStatus(t, s, store, "web", &shoalpb.UpdateStatus{State: shoalpb.UpdateState_UPDATE_STATE_CANARY, FromVersion: 1, ToVersion: 2})
	p := must(s.PromoteService(ctx, &shoalpb.PromoteServiceRequest{Service: "web"}))
	if st := p.UpdateStatus; st.State != shoalpb.UpdateState_UPDATE_STATE_UPDATING || !st.Promoted || st.Message != "promoted by hand" || st.ToVersion != 2 || p.SpecVersion != 2 {
		t.Fatalf("promoted: status %v version %d; want updating, promoted by hand, same version", st, p.SpecVersion)
	}
}

// Bad update and rollback configs are refused naming the flag, for create
// and update alike, and nothing is proposed.
func TestRolloutConfigsAreValidated(t *testing.T) {
	cases := []struct {
		name            string
		mode            shoalpb.ServiceMode
		update, rollbck *shoalpb.UpdateConfig
		errPart         string // "": accepted
	}{
		{"defaults", 0, nil, nil, ""},
		{"canary with auto-promote", 0, &shoalpb.UpdateConfig{Canary: 3, AutoPromoteMs: 60_000, FailureAction: shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK, MaxFailureRatio: 1}, nil, ""},
		{"parallelism too big", 0, &shoalpb.UpdateConfig{Parallelism: MaxReplicas + 1}, nil, "--update-parallelism: 1000001 is more than the limit"},
		{"negative delay", 0, &shoalpb.UpdateConfig{DelayMs: -1000}, nil, "--update-delay: -1s must not be negative"},
		{"negative monitor", 0, nil, &shoalpb.UpdateConfig{MonitorMs: -5}, "--rollback-monitor: -5ms must not be negative"},
		{"negative auto-promote", 0, &shoalpb.UpdateConfig{Canary: 1, AutoPromoteMs: -1}, nil, "--update-auto-promote: -1ms must not be negative"},
		{"ratio above 1", 0, &shoalpb.UpdateConfig{MaxFailureRatio: 1.5}, nil, "--update-max-failure-ratio: 1.5: give a fraction from 0 to 1"},
		{"negative ratio", 0, nil, &shoalpb.UpdateConfig{MaxFailureRatio: -0.1}, "--rollback-max-failure-ratio"},
		{"unknown order", 0, &shoalpb.UpdateConfig{Order: 7}, nil, "--update-order: unknown order 7; use start-first or stop-first"},
		{"unknown action", 0, nil, &shoalpb.UpdateConfig{FailureAction: 9}, "--rollback-failure-action: unknown action 9"},
		{"rollback of a rollback", 0, nil, &shoalpb.UpdateConfig{FailureAction: shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK}, "--rollback-failure-action: a rollback cannot roll back; use pause or continue"},
		{"canary in rollback config", 0, nil, &shoalpb.UpdateConfig{Canary: 1}, "rollback_config: canary and auto_promote_ms are for updates only"},
		{"more canaries than replicas", 0, &shoalpb.UpdateConfig{Canary: 4}, nil, "--update-canary: 4 canaries is more than the service's 3 replicas; give at most 3"},
		{"canary on a global service", shoalpb.ServiceMode_SERVICE_MODE_GLOBAL, &shoalpb.UpdateConfig{Canary: 1}, nil, "--update-canary: only replicated services run canaries, not a global service"},
		{"canary on a job", shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB, &shoalpb.UpdateConfig{Canary: 1}, nil, "not a replicated-job service"},
		{"auto-promote without canary", 0, &shoalpb.UpdateConfig{AutoPromoteMs: 1000}, nil, "--update-auto-promote: promotes canaries, and the update runs none; add --update-canary N"},
	}
	for _, c := range cases {
		spec := webSpec("nginx", 3)
		if c.mode != 0 {
			spec.Mode = c.mode
			if c.mode == shoalpb.ServiceMode_SERVICE_MODE_GLOBAL {
				spec.Replicas = 0
			}
		}
		spec.UpdateConfig, spec.RollbackConfig = c.update, c.rollbck
		checkValidation(t, c.name, spec, c.errPart)
	}
}

// Draining stamps drain_started_at once; leaving drain clears it; the
// deadline is set with or without an availability change.
func TestDrainStartAndDeadline(t *testing.T) {
	s, f := newFixture()
	ctx := context.Background()
	at := time.Unix(1_800_000_000, 0)
	s.cfg.Now = func() time.Time { return at }
	drain := &shoalpb.UpdateNodeRequest{Node: "w1ccc", HasAvailability: true, Availability: shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN}
	v, err := s.UpdateNode(ctx, drain)
	if err != nil || !v.Node.DrainStartedAt.AsTime().Equal(at) {
		t.Fatalf("drain: %v, drain_started_at %v; want %v", err, v.GetNode().GetDrainStartedAt(), at)
	}
	s.cfg.Now = func() time.Time { return at.Add(time.Minute) }
	v, err = s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1ccc", HasAvailability: true, Availability: shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN,
		HasDrainDeadline: true, DrainDeadlineMs: 30_000})
	if err != nil || !v.Node.DrainStartedAt.AsTime().Equal(at) || v.Node.Spec.DrainDeadlineMs != 30_000 {
		t.Fatalf("drain again with a deadline: %v, started %v deadline %d; want the first start kept and 30000", err, v.GetNode().GetDrainStartedAt(), v.GetNode().GetSpec().GetDrainDeadlineMs())
	}
	v, err = s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1ccc", HasDrainDeadline: true})
	if err != nil || v.Node.Spec.DrainDeadlineMs != 0 || v.Node.DrainStartedAt == nil {
		t.Fatalf("deadline 0 alone: %v, node %v; want no deadline, still draining", err, v.GetNode())
	}
	v, err = s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1ccc", HasAvailability: true, Availability: shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE})
	if err != nil || v.Node.DrainStartedAt != nil {
		t.Fatalf("active: %v, drain_started_at %v; want it cleared", err, v.GetNode().GetDrainStartedAt())
	}
	before := proto.Clone(f.nodes["w1ccc"])
	proposed := f.proposed
	_, err = s.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: "w1ccc", HasAvailability: true, Availability: shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN,
		HasDrainDeadline: true, DrainDeadlineMs: -1000})
	wantStatus(t, "negative deadline", err, codes.InvalidArgument, "--drain-deadline: -1s must not be negative")
	if f.proposed != proposed || !proto.Equal(before, f.nodes["w1ccc"]) {
		t.Fatal("a refused drain changed the node")
	}
}

// A service event says when the update state changed, with the message.
func TestServiceEventsCarryUpdateStateChanges(t *testing.T) {
	seen := updateStates{"s1": shoalpb.UpdateState_UPDATE_STATE_COMPLETED}
	svc := func(st shoalpb.UpdateState, msg string) *shoalpb.Service {
		return &shoalpb.Service{Id: "s1", Spec: &shoalpb.ServiceSpec{Name: "web"}, UpdateStatus: &shoalpb.UpdateStatus{State: st, Message: msg}}
	}
	steps := []struct {
		kind  state.EventKind
		obj   *shoalpb.Service
		attrs map[string]string // the updatestate attributes expected
	}{
		{state.EventUpdate, svc(shoalpb.UpdateState_UPDATE_STATE_COMPLETED, ""), nil},
		{state.EventUpdate, svc(shoalpb.UpdateState_UPDATE_STATE_UPDATING, ""), map[string]string{"updatestate.old": "completed", "updatestate.new": "updating"}},
		{state.EventUpdate, svc(shoalpb.UpdateState_UPDATE_STATE_UPDATING, ""), nil},
		{state.EventUpdate, svc(shoalpb.UpdateState_UPDATE_STATE_PAUSED, "update paused: 1 of 3 failed"),
			map[string]string{"updatestate.old": "updating", "updatestate.new": "paused", "message": "update paused: 1 of 3 failed"}},
		{state.EventDelete, svc(shoalpb.UpdateState_UPDATE_STATE_PAUSED, ""), nil},
		{state.EventCreate, &shoalpb.Service{Id: "s1", Spec: &shoalpb.ServiceSpec{Name: "web"}}, nil},
		{state.EventUpdate, svc(shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED, "rollback by hand"),
			map[string]string{"updatestate.old": "none", "updatestate.new": "rollback_started", "message": "rollback by hand"}},
	}
	for i, step := range steps {
		ev := state.Event{Kind: step.kind, Object: step.obj}
		e := toEvent(ev, time.Now())
		seen.annotate(e, ev)
		got := map[string]string{}
		for _, k := range []string{"updatestate.old", "updatestate.new", "message"} {
			if v, ok := e.Attributes[k]; ok {
				got[k] = v
			}
		}
		if len(got) != len(step.attrs) {
			t.Fatalf("step %d: attributes %v, want %v", i, got, step.attrs)
		}
		for k, v := range step.attrs {
			if got[k] != v {
				t.Fatalf("step %d: attributes %v, want %v", i, got, step.attrs)
			}
		}
	}
}
