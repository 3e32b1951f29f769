package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// t0 is the time every fixture task ended or started at, unless told.
var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

const (
	pending   = shoalpb.TaskState_TASK_STATE_PENDING
	assigned  = shoalpb.TaskState_TASK_STATE_ASSIGNED
	running   = shoalpb.TaskState_TASK_STATE_RUNNING
	complete  = shoalpb.TaskState_TASK_STATE_COMPLETE
	shutdown  = shoalpb.TaskState_TASK_STATE_SHUTDOWN
	failed    = shoalpb.TaskState_TASK_STATE_FAILED
	rejected  = shoalpb.TaskState_TASK_STATE_REJECTED
	remove    = shoalpb.TaskState_TASK_STATE_REMOVE
	orphaned  = shoalpb.TaskState_TASK_STATE_ORPHANED
	replMode  = shoalpb.ServiceMode_SERVICE_MODE_REPLICATED
	globMode  = shoalpb.ServiceMode_SERVICE_MODE_GLOBAL
	rjobMode  = shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB
	gjobMode  = shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB
	condAny   = shoalpb.RestartCondition_RESTART_CONDITION_ANY
	condFail  = shoalpb.RestartCondition_RESTART_CONDITION_ON_FAILURE
	condNone  = shoalpb.RestartCondition_RESTART_CONDITION_NONE
	nodeReady = shoalpb.NodeState_NODE_STATE_READY
)

// node returns a ready, active worker named id.
func node(id string, opts ...func(*shoalpb.Node)) *shoalpb.Node {
	n := &shoalpb.Node{
		Id:          id,
		Meta:        &shoalpb.Meta{Version: 3},
		Spec:        &shoalpb.NodeSpec{Availability: shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE, Labels: map[string]string{}},
		Description: &shoalpb.NodeDescription{Hostname: "host-" + id, NanoCpus: 4e9, MemoryBytes: 8 << 30},
		Status:      &shoalpb.NodeStatus{State: nodeReady},
		Role:        shoalpb.NodeRole_NODE_ROLE_WORKER,
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func isDown(n *shoalpb.Node)    { n.Status.State = shoalpb.NodeState_NODE_STATE_DOWN }
func isUnknown(n *shoalpb.Node) { n.Status.State = shoalpb.NodeState_NODE_STATE_UNKNOWN }
func isDrained(n *shoalpb.Node) {
	n.Spec.Availability = shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
}
func isPaused(n *shoalpb.Node) {
	n.Spec.Availability = shoalpb.NodeAvailability_NODE_AVAILABILITY_PAUSE
}
func label(k, v string) func(*shoalpb.Node) {
	return func(n *shoalpb.Node) { n.Spec.Labels[k] = v }
}

// service returns a service at spec version 1 (job iteration 1 for jobs).
func service(id string, mode shoalpb.ServiceMode, replicas uint64, opts ...func(*shoalpb.Service)) *shoalpb.Service {
	s := &shoalpb.Service{
		Id:          id,
		Meta:        &shoalpb.Meta{Version: 5},
		SpecVersion: 1,
		Spec: &shoalpb.ServiceSpec{
			Name:     "svc-" + id,
			Mode:     mode,
			Replicas: replicas,
			Task: &shoalpb.TaskSpec{
				Container: &shoalpb.ContainerSpec{Image: "app:1"},
				Restart:   &shoalpb.RestartPolicy{},
			},
		},
	}
	if mode == rjobMode || mode == gjobMode {
		s.JobIteration = 1
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func restart(cond shoalpb.RestartCondition, delayMs int64, maxAttempts uint64, windowMs int64) func(*shoalpb.Service) {
	return func(s *shoalpb.Service) {
		s.Spec.Task.Restart = &shoalpb.RestartPolicy{Condition: cond, DelayMs: delayMs, MaxAttempts: maxAttempts, WindowMs: windowMs}
	}
}

// specVersion sets the service's spec version and gives its task spec the
// image app:v, so tasks of other versions are outdated.
func specVersion(v uint64) func(*shoalpb.Service) {
	return func(s *shoalpb.Service) {
		s.SpecVersion = v
		s.Spec.Task.Container.Image = fmt.Sprintf("app:%d", v)
	}
}

func iteration(i uint64) func(*shoalpb.Service) {
	return func(s *shoalpb.Service) { s.JobIteration = i }
}

func maxConcurrent(n uint64) func(*shoalpb.Service) {
	return func(s *shoalpb.Service) { s.Spec.MaxConcurrent = n }
}

func constraint(c string) func(*shoalpb.Service) {
	return func(s *shoalpb.Service) {
		s.Spec.Task.Placement = &shoalpb.Placement{Constraints: []string{c}}
	}
}

// task returns a task of svc made from its current spec, desired RUNNING, in
// state since t0. Options adjust it.
func task(id string, svc *shoalpb.Service, slot uint64, nodeID string, state shoalpb.TaskState, opts ...func(*shoalpb.Task)) *shoalpb.Task {
	t := &shoalpb.Task{
		Id:           id,
		Meta:         &shoalpb.Meta{Version: 9, CreatedAt: timestamppb.New(t0.Add(-time.Hour))},
		ServiceId:    svc.Id,
		ServiceName:  svc.Spec.Name,
		Slot:         slot,
		NodeId:       nodeID,
		Spec:         proto.Clone(svc.Spec.Task).(*shoalpb.TaskSpec),
		SpecVersion:  svc.SpecVersion,
		DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
		Status:       &shoalpb.TaskStatus{State: state, Timestamp: timestamppb.New(t0)},
		JobIteration: svc.JobIteration,
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

func desired(s shoalpb.TaskState) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) { t.DesiredState = s }
}

// at sets the status timestamp to t0+d.
func at(d time.Duration) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) { t.Status.Timestamp = timestamppb.New(t0.Add(d)) }
}

// version marks the task as made from spec version v (image app:v).
func version(v uint64) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) {
		t.SpecVersion = v
		t.Spec.Container.Image = fmt.Sprintf("app:%d", v)
	}
}

// ready marks the task ready (its status timestamp is its ready since).
func ready(t *shoalpb.Task) { t.Status.Ready = true }

// created sets the task's creation time to t0+d.
func created(d time.Duration) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) { t.Meta.CreatedAt = timestamppb.New(t0.Add(d)) }
}

func iter(i uint64) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) { t.JobIteration = i }
}

func msg(m string) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) { t.Status.Message = m }
}

// history returns n dead tasks of svc in slot (or on nodeID), desired
// SHUTDOWN, status SHUTDOWN, ended at t0-1m, t0-2m, … (h1 is the newest).
func history(prefix string, svc *shoalpb.Service, slot uint64, nodeID string, n int) []*shoalpb.Task {
	var out []*shoalpb.Task
	for i := 1; i <= n; i++ {
		out = append(out, task(fmt.Sprintf("%s%d", prefix, i), svc, slot, nodeID, shutdown,
			desired(shoalpb.TaskState_TASK_STATE_SHUTDOWN), at(-time.Duration(i)*time.Minute)))
	}
	return out
}

func join[T any](lists ...[]T) []T {
	var out []T
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// counter makes deterministic task IDs: new1, new2, …
func counter() func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("new%d", n)
	}
}

// summary describes a plan in sorted lines, e.g. "create slot 2",
// "create on n1", "shutdown a1", "shutdown a1: node drained",
// "orphan a2: node down", "remove a3", "delete a4", "wake +5s",
// "service v2 paused failed [b1]: update paused: …".
func summary(p Plan) []string {
	var out []string
	if p.Service != nil {
		st := p.Service.GetUpdateStatus()
		line := fmt.Sprintf("service v%d %s", p.Service.GetSpecVersion(),
			strings.ToLower(strings.TrimPrefix(st.GetState().String(), "UPDATE_STATE_")))
		if st.GetPromoted() {
			line += " promoted"
		}
		if len(st.GetFailedTasks()) > 0 {
			line += fmt.Sprintf(" failed %v", st.GetFailedTasks())
		}
		if st.GetMessage() != "" {
			line += ": " + st.GetMessage()
		}
		out = append(out, line)
	}
	for _, t := range p.Create {
		if t.NodeId != "" {
			out = append(out, "create on "+t.NodeId)
		} else {
			out = append(out, fmt.Sprintf("create slot %d", t.Slot))
		}
	}
	for _, t := range p.Shutdown {
		line := "shutdown " + t.Id
		if m := t.GetStatus().GetMessage(); m == msgNodeDrained {
			line += ": " + m
		}
		out = append(out, line)
	}
	for _, t := range p.Orphan {
		out = append(out, "orphan "+t.Id+": "+t.Status.Message)
	}
	for _, t := range p.Remove {
		out = append(out, "remove "+t.Id)
	}
	for _, id := range p.Delete {
		out = append(out, "delete "+id)
	}
	if !p.Wake.IsZero() {
		d := p.Wake.Sub(t0).String()
		if !strings.HasPrefix(d, "-") {
			d = "+" + d
		}
		out = append(out, "wake "+d)
	}
	slices.Sort(out)
	return out
}

// applyPlan returns tasks as the store holds them after p is written.
func applyPlan(tasks []*shoalpb.Task, p Plan) []*shoalpb.Task {
	byID := map[string]*shoalpb.Task{}
	var order []string
	for _, t := range tasks {
		byID[t.Id] = t
		order = append(order, t.Id)
	}
	for _, list := range [][]*shoalpb.Task{p.Shutdown, p.Orphan, p.Remove} {
		for _, t := range list {
			byID[t.Id] = t
		}
	}
	for _, t := range p.Create {
		byID[t.Id] = t
		order = append(order, t.Id)
	}
	for _, id := range p.Delete {
		delete(byID, id)
	}
	var out []*shoalpb.Task
	for _, id := range order {
		if t := byID[id]; t != nil {
			out = append(out, t)
		}
	}
	return out
}

// agent returns tasks with every task that matches pick moved to state (a
// copy), as the dispatcher would write it.
func agent(tasks []*shoalpb.Task, state shoalpb.TaskState, pick func(*shoalpb.Task) bool) []*shoalpb.Task {
	out := make([]*shoalpb.Task, len(tasks))
	for i, t := range tasks {
		if pick(t) {
			t = proto.Clone(t).(*shoalpb.Task)
			t.Status.State = state
		}
		out[i] = t
	}
	return out
}

// reconcileCase is one row of the reconciler tables.
type reconcileCase struct {
	name     string
	svc      *shoalpb.Service // nil: the service was removed
	tasks    []*shoalpb.Task
	nodes    []*shoalpb.Node
	settings Settings
	now      time.Duration // after t0
	want     []string      // summary of the plan
	waiting  string        // Input.Waiting
	// unstable skips the check that reconciling the result again plans
	// nothing (rows whose plan is only the first step of several).
	unstable bool
}

func runCases(t *testing.T, cases []reconcileCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := Input{Service: c.svc, Tasks: c.tasks, Nodes: c.nodes, Settings: c.settings,
				Now: t0.Add(c.now), NewID: counter(), Waiting: c.waiting}
			inputs := snapshot(c.tasks)
			p := Reconcile(in)
			if got := summary(p); !slices.Equal(got, c.want) {
				t.Fatalf("plan:\n  got  %s\n  want %s", strings.Join(got, "; "), strings.Join(c.want, "; "))
			}
			if !slices.EqualFunc(inputs, c.tasks, func(a, b *shoalpb.Task) bool { return proto.Equal(a, b) }) {
				t.Fatal("Reconcile modified its input tasks")
			}
			checkPlanTasks(t, c.svc, c.tasks, p, t0.Add(c.now))
			if c.unstable {
				return
			}
			if p.Service != nil {
				in.Service = p.Service
			}
			in.Tasks = applyPlan(c.tasks, p)
			if again := Reconcile(in); !again.Empty() {
				t.Fatalf("reconciling the result again plans %v", summary(again))
			}
		})
	}
}

func snapshot(tasks []*shoalpb.Task) []*shoalpb.Task {
	out := make([]*shoalpb.Task, len(tasks))
	for i, t := range tasks {
		out[i] = proto.Clone(t).(*shoalpb.Task)
	}
	return out
}

// checkPlanTasks checks the invariants of every plan: new tasks are complete
// copies of the service's spec, changed tasks keep the version they were
// read with, and no task appears twice.
func checkPlanTasks(t *testing.T, svc *shoalpb.Service, tasks []*shoalpb.Task, p Plan, now time.Time) {
	t.Helper()
	read := map[string]*shoalpb.Task{}
	for _, x := range tasks {
		read[x.Id] = x
	}
	seen := map[string]bool{}
	once := func(id string) {
		if seen[id] {
			t.Fatalf("task %s appears twice in the plan", id)
		}
		seen[id] = true
	}
	for _, c := range p.Create {
		once(c.Id)
		switch {
		case c.ServiceId != svc.Id || c.ServiceName != svc.Spec.Name:
			t.Fatalf("new task %s: service %q/%q", c.Id, c.ServiceId, c.ServiceName)
		case !proto.Equal(c.Spec, svc.Spec.Task) || c.SpecVersion != svc.SpecVersion || c.JobIteration != svc.JobIteration:
			t.Fatalf("new task %s: spec not copied from the service", c.Id)
		case c.DesiredState != shoalpb.TaskState_TASK_STATE_RUNNING || c.Status.GetState() != pending ||
			c.Status.GetMessage() != "pending" || !c.Status.GetTimestamp().AsTime().Equal(now):
			t.Fatalf("new task %s: desired %v, status %v", c.Id, c.DesiredState, c.Status)
		case (c.Slot == 0) == (c.NodeId == ""):
			t.Fatalf("new task %s: slot %d node %q: exactly one must be set", c.Id, c.Slot, c.NodeId)
		}
	}
	for _, list := range [][]*shoalpb.Task{p.Shutdown, p.Orphan, p.Remove} {
		for _, c := range list {
			once(c.Id)
			orig := read[c.Id]
			if orig == nil || c.GetMeta().GetVersion() != orig.GetMeta().GetVersion() {
				t.Fatalf("changed task %s does not carry the version it was read with", c.Id)
			}
		}
	}
	for _, c := range p.Shutdown {
		if c.DesiredState != shoalpb.TaskState_TASK_STATE_SHUTDOWN || c.Status.GetState() != read[c.Id].Status.GetState() {
			t.Fatalf("shutdown %s: desired %v status %v", c.Id, c.DesiredState, c.Status.GetState())
		}
	}
	for _, c := range p.Orphan {
		if c.Status.GetState() != orphaned || c.DesiredState < shoalpb.TaskState_TASK_STATE_SHUTDOWN {
			t.Fatalf("orphan %s: desired %v status %v", c.Id, c.DesiredState, c.Status.GetState())
		}
	}
	for _, c := range p.Remove {
		if c.DesiredState != remove {
			t.Fatalf("remove %s: desired %v", c.Id, c.DesiredState)
		}
	}
	for _, id := range p.Delete {
		once(id)
	}
	if p.Service != nil && (p.Service.GetId() != svc.GetId() || p.Service.GetMeta().GetVersion() != svc.GetMeta().GetVersion()) {
		t.Fatalf("the service written does not carry the version it was read with")
	}
}
