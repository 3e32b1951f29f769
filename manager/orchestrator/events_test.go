package orchestrator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

const (
	accepted  = shoalpb.TaskState_TASK_STATE_ACCEPTED
	preparing = shoalpb.TaskState_TASK_STATE_PREPARING
	starting  = shoalpb.TaskState_TASK_STATE_STARTING
)

// TestOnEvent checks which events mark which services dirty, and when they
// make the next pass run the scheduler. Service "q" is quiet (its last plan
// did not depend on which live tasks run), "r" is not (a rollout is under
// way, say); "w" waits for "d" (quiet too).
func TestOnEvent(t *testing.T) {
	q := service("q", replMode, 3)
	r := service("r", replMode, 3)
	d := service("d", replMode, 1)
	cases := []struct {
		name  string
		kind  state.EventKind
		obj   proto.Message
		dirty []string // services marked
		all   bool
		place bool
	}{
		{"create pending", state.EventCreate, task("t", q, 1, "", pending), []string{"q"}, false, true},
		{"create assigned", state.EventCreate, task("t", q, 1, "n1", assigned), []string{"q"}, false, false},
		{"delete dead", state.EventDelete, task("t", q, 1, "n1", shutdown, desired(shutdown)), []string{"q"}, false, true},
		{"delete running", state.EventDelete, task("t", q, 1, "n1", running), []string{"q"}, false, false},
		{"placed (node set)", state.EventUpdate, task("t", q, 1, "n1", assigned), []string{"q"}, false, false},
		{"explained, still pending", state.EventUpdate, task("t", q, 1, "", pending, msg("no suitable node")), []string{"q"}, false, true},
		{"accepted", state.EventUpdate, task("t", q, 1, "n1", accepted), nil, false, false},
		{"preparing", state.EventUpdate, task("t", q, 1, "n1", preparing), nil, false, false},
		{"starting", state.EventUpdate, task("t", q, 1, "n1", starting), nil, false, false},
		{"starting, rollout", state.EventUpdate, task("t", r, 1, "n1", starting), nil, false, false},
		{"running, quiet service", state.EventUpdate, task("t", q, 1, "n1", running), nil, false, false},
		{"running, rollout in progress", state.EventUpdate, task("t", r, 1, "n1", running), []string{"r"}, false, false},
		{"became ready, rollout in progress", state.EventUpdate, task("t", r, 1, "n1", running, ready), []string{"r"}, false, false},
		{"became ready, quiet service", state.EventUpdate, task("t", q, 1, "n1", running, ready), nil, false, false},
		{"running, service never reconciled", state.EventUpdate, task("t", service("new", replMode, 1), 1, "n1", running), []string{"new"}, false, false},
		{"failed", state.EventUpdate, task("t", q, 1, "n1", failed), []string{"q"}, false, true},
		{"complete", state.EventUpdate, task("t", q, 1, "n1", complete), []string{"q"}, false, true},
		{"rejected", state.EventUpdate, task("t", q, 1, "n1", rejected), []string{"q"}, false, true},
		{"orphaned", state.EventUpdate, task("t", q, 1, "n1", orphaned, desired(shutdown)), []string{"q"}, false, true},
		{"shut down by the agent", state.EventUpdate, task("t", q, 1, "n1", shutdown, desired(shutdown)), []string{"q"}, false, true},
		{"desired shutdown, still running", state.EventUpdate, task("t", q, 1, "n1", running, desired(shutdown)), []string{"q"}, false, true},
		{"desired shutdown, starting", state.EventUpdate, task("t", q, 1, "n1", starting, desired(shutdown)), []string{"q"}, false, true},
		{"desired remove, running", state.EventUpdate, task("t", q, 1, "n1", running, desired(remove)), []string{"q"}, false, true},
		{"service update", state.EventUpdate, q, []string{"q"}, false, false},
		{"service delete", state.EventDelete, r, []string{"r"}, false, false},
		{"a dependency's task starting", state.EventUpdate, task("t", d, 1, "n1", starting), []string{"w"}, false, false},
		{"a dependency's task became ready, quiet dependency", state.EventUpdate, task("t", d, 1, "n1", running, ready), []string{"w"}, false, false},
		{"a dependency created", state.EventCreate, d, []string{"d", "w"}, false, false},
		{"a dependency removed", state.EventDelete, d, []string{"d", "w"}, false, false},
		{"node", state.EventUpdate, node("n1"), nil, true, true},
		{"cluster", state.EventUpdate, &shoalpb.Cluster{Id: "c"}, nil, true, true},
		{"reset", state.EventReset, nil, nil, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := marks{dirty: map[string]struct{}{}}
			quiet := map[string]struct{}{"q": {}, "d": {}}
			waiters := map[string][]string{"w": {"svc-d"}}
			onEvent(&m, quiet, waiters, state.Event{Kind: c.kind, Object: c.obj})
			var got []string
			for id := range m.dirty {
				got = append(got, id)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.dirty) || m.all != c.all || m.place != c.place {
				t.Fatalf("got dirty %v all %v place %v, want dirty %v all %v place %v",
					got, m.all, m.place, c.dirty, c.all, c.place)
			}
		})
	}
}

// TestQuietBookkeeping checks that a service is quiet only between a pass
// that found its plan independent of which tasks run and the next mark.
func TestQuietBookkeeping(t *testing.T) {
	svc := service("s", replMode, 3)
	isQuiet := func(l *loop) bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		_, ok := l.quiet["s"]
		return ok
	}
	runningReport := state.Event{Kind: state.EventUpdate, Object: task("t", svc, 1, "n1", running)}
	event := func(l *loop, ev state.Event) { l.mark(func(m *marks) { onEvent(m, l.quiet, l.waiters, ev) }) }
	newLoop := func() *loop {
		return &loop{marks: marks{dirty: map[string]struct{}{"s": {}}}, quiet: map[string]struct{}{}}
	}

	// Quiet after a pass; a RUNNING report then marks nothing; a marking
	// event does, and the next pass takes the service out until it says.
	l := newLoop()
	l.takeMarks()
	l.noteQuiet([]string{"s"})
	if !isQuiet(l) {
		t.Fatal("not quiet after a pass that said so")
	}
	event(l, runningReport)
	if _, ok := l.marks.dirty["s"]; ok {
		t.Fatal("a RUNNING report of a quiet service marked it")
	}
	event(l, state.Event{Kind: state.EventUpdate, Object: task("t", svc, 1, "n1", failed)})
	if m := l.takeMarks(); len(m.dirty) != 1 || isQuiet(l) {
		t.Fatal("a failure did not mark the service, or taking its mark left it quiet")
	}

	// A report that arrives while the pass runs (after it took its marks,
	// before it notes the service quiet) marks it, and keeps it loud.
	l = newLoop()
	l.takeMarks()
	event(l, runningReport)
	l.noteQuiet([]string{"s"})
	if isQuiet(l) {
		t.Fatal("quiet although a report arrived during the pass")
	}
	if _, ok := l.marks.dirty["s"]; !ok {
		t.Fatal("the report during the pass did not mark the service")
	}

	// A mark of everything (node event, resync, reset) during the pass
	// keeps every service loud; taking it makes every service loud.
	l = newLoop()
	l.takeMarks()
	l.mark(func(m *marks) { m.all = true })
	l.noteQuiet([]string{"s"})
	if isQuiet(l) {
		t.Fatal("quiet although everything was marked during the pass")
	}
	l.takeMarks()
	l.noteQuiet([]string{"s"})
	l.mark(func(m *marks) { m.all = true })
	l.takeMarks()
	if isQuiet(l) {
		t.Fatal("still quiet after a pass took a mark of everything")
	}
}

// TestRunningMatters checks Plan.RunningMatters on typical states.
func TestRunningMatters(t *testing.T) {
	v2 := service("a", replMode, 2, specVersion(2))
	nodes := []*shoalpb.Node{node("n1"), node("n2")}
	cases := []struct {
		name  string
		svc   *shoalpb.Service
		tasks []*shoalpb.Task
		want  bool
	}{
		{"steady", service("a", replMode, 2), []*shoalpb.Task{
			task("a1", service("a", replMode, 2), 1, "n1", running),
			task("a2", service("a", replMode, 2), 2, "n2", starting)}, false},
		{"scaling up", service("a", replMode, 2), []*shoalpb.Task{
			task("a1", service("a", replMode, 2), 1, "n1", starting)}, false},
		{"scaling down", service("a", replMode, 1), []*shoalpb.Task{
			task("a1", service("a", replMode, 1), 1, "n1", running),
			task("a2", service("a", replMode, 1), 2, "n2", starting)}, true},
		{"rollout waiting for a replacement", v2, []*shoalpb.Task{
			task("old1", v2, 1, "n1", shutdown, version(1), desired(shutdown)),
			task("new1", v2, 1, "n1", starting),
			task("old2", v2, 2, "n2", running, version(1))}, true},
		{"rollout done, last replacement starting", v2, []*shoalpb.Task{
			task("old1", v2, 1, "n1", shutdown, version(1), desired(shutdown)),
			task("new1", v2, 1, "n1", running),
			task("old2", v2, 2, "n2", running, version(1), desired(shutdown)),
			task("new2", v2, 2, "n2", starting)}, false},
		{"two live tasks in a slot", service("a", replMode, 1), []*shoalpb.Task{
			task("a1", service("a", replMode, 1), 1, "n1", running),
			task("a2", service("a", replMode, 1), 1, "n2", starting)}, true},
		{"global rollout", service("g", globMode, 0, specVersion(2)), []*shoalpb.Task{
			task("g1", service("g", globMode, 0), 0, "n1", running, version(1)),
			task("g2", service("g", globMode, 0), 0, "n2", running, version(1))}, true},
		{"job", service("j", rjobMode, 2), []*shoalpb.Task{
			task("j1", service("j", rjobMode, 2), 1, "n1", starting),
			task("j2", service("j", rjobMode, 2), 2, "n2", complete)}, false},
		{"removed service", nil, []*shoalpb.Task{
			task("a1", service("a", replMode, 1), 1, "n1", running)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Reconcile(Input{Service: c.svc, Tasks: c.tasks, Nodes: nodes, Now: t0, NewID: counter()})
			if p.RunningMatters != c.want {
				t.Fatalf("RunningMatters = %v, want %v (plan %v)", p.RunningMatters, c.want, summary(p))
			}
		})
	}
}

// TestProgressReports checks the claims the loop's event rule rests on, on
// random states of every mode, rollouts (states, configs) and drains
// included: an agent's report that a live task moved up (to ACCEPTED,
// PREPARING or STARTING, later timestamp) never changes a plan, except the
// choice among a unit's live tasks (then RunningMatters is set and the plan
// is not empty, before and after); a report that it is RUNNING, or that a
// RUNNING task became ready, changes nothing when RunningMatters is false;
// and no such report changes RunningMatters.
func TestProgressReports(t *testing.T) {
	modes := []shoalpb.ServiceMode{replMode, globMode, rjobMode, gjobMode}
	states := []shoalpb.TaskState{pending, assigned, accepted, preparing, starting, running,
		complete, shutdown, failed, rejected, orphaned}
	checked := 0
	for seed := uint64(1); seed <= 1000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		mode := modes[rng.IntN(len(modes))]
		svc := service("s", mode, uint64(rng.IntN(5)), specVersion(uint64(1+rng.IntN(2))),
			restart(condAny, int64(rng.IntN(3))*1000, uint64(rng.IntN(3)), 0), maxConcurrent(uint64(rng.IntN(3))))
		svc.Spec.Task.Container.Image = fmt.Sprintf("app:%d", svc.SpecVersion)
		if svc.JobIteration > 0 {
			svc.JobIteration = uint64(1 + rng.IntN(2))
		}
		if rng.IntN(2) == 0 {
			svc.Spec.UpdateConfig = &shoalpb.UpdateConfig{
				Parallelism: uint64(rng.IntN(3)), Order: shoalpb.UpdateOrder(rng.IntN(2)),
				FailureAction: shoalpb.FailureAction(rng.IntN(3)), MonitorMs: int64(rng.IntN(2)) * 1000,
				DelayMs: int64(rng.IntN(2)) * 1000, Canary: uint64(rng.IntN(3)), AutoPromoteMs: int64(rng.IntN(2)) * 1000,
				MaxFailureRatio: float32(rng.IntN(2)) / 2,
			}
			svc.PreviousSpecs = []*shoalpb.VersionedSpec{{Version: 1, Spec: service("s", mode, 1).Spec}}
			svc.UpdateStatus = &shoalpb.UpdateStatus{State: shoalpb.UpdateState(rng.IntN(8)),
				StartedAt: timestamppb.New(t0.Add(-5 * time.Second)), FromVersion: 1, Promoted: rng.IntN(2) == 0}
		}
		var nodes []*shoalpb.Node
		for i := range 1 + rng.IntN(4) {
			n := node(fmt.Sprintf("n%d", i))
			switch rng.IntN(8) {
			case 0:
				isDown(n)
				n.Status.UpdatedAt = timestamppb.New(t0.Add(-time.Duration(rng.IntN(4)) * time.Second))
			case 1:
				isDrained(n)
				if rng.IntN(2) == 0 {
					n.DrainStartedAt = timestamppb.New(t0.Add(-time.Duration(rng.IntN(4)) * time.Second))
					n.Spec.DrainDeadlineMs = 2000
				}
			case 2:
				isPaused(n)
			}
			nodes = append(nodes, n)
		}
		var tasks []*shoalpb.Task
		for i := range rng.IntN(10) {
			st := states[rng.IntN(len(states))]
			nodeID := fmt.Sprintf("n%d", rng.IntN(len(nodes)+1)) // n<len>: a removed node
			if st == pending {
				nodeID = ""
			}
			slot := uint64(rng.IntN(6))
			if mode == globMode || mode == gjobMode {
				slot = 0
			}
			opts := []func(*shoalpb.Task){
				version(uint64(1 + rng.IntN(2))),
				at(-time.Duration(rng.IntN(10)) * time.Second),
			}
			if svc.JobIteration > 0 {
				opts = append(opts, iter(uint64(1+rng.IntN(2))))
			}
			if rng.IntN(4) == 0 {
				opts = append(opts, desired(shutdown))
			}
			if rng.IntN(2) == 0 {
				opts = append(opts, ready)
			}
			if rng.IntN(4) == 0 {
				opts = append(opts, msg("no suitable node (drained on 1 node)"))
			}
			opts = append(opts, created(-time.Duration(rng.IntN(10))*time.Second))
			tasks = append(tasks, task(fmt.Sprintf("t%d", i), svc, slot, nodeID, st, opts...))
		}
		reconcile := func(tasks []*shoalpb.Task) Plan {
			return Reconcile(Input{Service: svc, Tasks: tasks, Nodes: nodes, Now: t0, NewID: counter()})
		}
		before := reconcile(tasks)
		for i, tk := range tasks {
			if !isRunnable(tk) || isReady(tk) || isPending(tk) { // agents report on assigned tasks
				continue
			}
			var reports []*shoalpb.TaskStatus
			for _, st := range []shoalpb.TaskState{accepted, preparing, starting, running} {
				if st > tk.GetStatus().GetState() {
					reports = append(reports, &shoalpb.TaskStatus{State: st, Timestamp: timestamppb.New(t0.Add(time.Minute))})
				}
			}
			if tk.GetStatus().GetState() <= running {
				// Ready at once (no check), or a RUNNING task's readiness
				// flip, which keeps its status timestamp.
				ts := timestamppb.New(t0.Add(time.Minute))
				if isRunning(tk) {
					ts = tk.GetStatus().GetTimestamp()
				}
				reports = append(reports, &shoalpb.TaskStatus{State: running, Ready: true, Timestamp: ts})
			}
			for _, st := range reports {
				c := proto.Clone(tk).(*shoalpb.Task)
				c.Status = st
				after := reconcile(slices.Concat(tasks[:i], []*shoalpb.Task{c}, tasks[i+1:]))
				checked++
				same := slices.Equal(summary(before), summary(after))
				where := fmt.Sprintf("seed %d, %s %v→%v (ready %v): plan %s → %s", seed, tk.Id, tk.GetStatus().GetState(),
					st.GetState(), st.GetReady(), strings.Join(summary(before), "; "), strings.Join(summary(after), "; "))
				switch {
				case after.RunningMatters != before.RunningMatters:
					t.Fatalf("%s: RunningMatters %v → %v", where, before.RunningMatters, after.RunningMatters)
				case !before.RunningMatters && !same:
					t.Fatalf("%s: the plan changed, RunningMatters false", where)
				case st.GetState() != running && !same && (before.Empty() || after.Empty()):
					t.Fatalf("%s: a progress report changed an empty plan", where)
				}
			}
		}
	}
	if checked < 500 {
		t.Fatalf("only %d reports checked", checked)
	}
}
