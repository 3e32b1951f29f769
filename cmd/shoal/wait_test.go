package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// rolloutView is a 3-replica service in the given update state whose slots
// run the current spec, ready, except the first `old` slots, which run the
// previous one.
func rolloutView(state shoalpb.UpdateState, msg string, old int, config *shoalpb.UpdateConfig) (*shoalpb.ServiceView, []*shoalpb.Task) {
	spec := &shoalpb.ServiceSpec{Name: "web", Replicas: 3, UpdateConfig: config,
		Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "web:v2"}}}
	servicespec.FillDefaults(spec)
	svc := &shoalpb.Service{Id: "s1", Spec: spec, SpecVersion: 2,
		UpdateStatus: &shoalpb.UpdateStatus{State: state, Message: msg, FromVersion: 1, ToVersion: 2}}
	var tasks []*shoalpb.Task
	for slot := 1; slot <= 3; slot++ {
		task := proto.Clone(spec.Task).(*shoalpb.TaskSpec)
		if slot <= old {
			task.Container.Image = "web:v1"
		}
		tasks = append(tasks, &shoalpb.Task{Id: fmt.Sprintf("t%d", slot), ServiceName: "web", Slot: uint64(slot), Spec: task,
			Meta: &shoalpb.Meta{CreatedAt: timestamppb.New(time.Unix(100, 0))}, DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
			Status: &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_RUNNING, Ready: true}})
	}
	return &shoalpb.ServiceView{Service: svc, Desired: 3, Running: 3}, tasks
}

// A waiting command ends where its rollout ends: done when complete and
// converged, an error when it paused or was rolled back, a message at a
// canary waiting for a promotion by hand.
func TestWaitFollowsTheRollout(t *testing.T) {
	const (
		updating   = shoalpb.UpdateState_UPDATE_STATE_UPDATING
		canary     = shoalpb.UpdateState_UPDATE_STATE_CANARY
		paused     = shoalpb.UpdateState_UPDATE_STATE_PAUSED
		completed  = shoalpb.UpdateState_UPDATE_STATE_COMPLETED
		rbStarted  = shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED
		rbPaused   = shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED
		rbComplete = shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED
	)
	autoPromote := &shoalpb.UpdateConfig{Parallelism: 1, Canary: 1, AutoPromoteMs: 60_000}
	cases := []struct {
		name    string
		f       follow
		state   shoalpb.UpdateState
		msg     string
		old     int
		config  *shoalpb.UpdateConfig
		done    bool
		stopped string // a part of it; "": none
		canary  string // a part of it; "": none
		// canaryStarting: the canary (the last task) is not ready yet.
		canaryStarting bool
	}{
		{name: "updating, tasks current", f: followUpdate, state: updating},
		{name: "completed", f: followUpdate, state: completed, done: true},
		{name: "completed, an old task left", f: followUpdate, state: completed, old: 1},
		{name: "paused", f: followUpdate, state: paused, msg: "update paused: 1 of 3 replacements failed", old: 2,
			stopped: "update paused: 1 of 3 replacements failed; 'shoal service ps web' shows the tasks; fix the cause and update again, or roll back with 'shoal service rollback web'"},
		{name: "rolled back by the failure action", f: followUpdate, state: rbStarted, msg: "task web.1.t1 failed its health check", old: 3,
			stopped: "update rolled back: task web.1.t1 failed its health check"},
		{name: "rolled back, rollback paused", f: followUpdate, state: rbPaused, stopped: "update rolled back: no reason given"},
		{name: "canary", f: followUpdate, state: canary, old: 2,
			canary: "canary web.3.t3: running\ncanaries ready: promote with 'shoal service promote web' or roll back with 'shoal service rollback web'"},
		{name: "canary not ready yet", f: followUpdate, state: canary, old: 2, canaryStarting: true},
		{name: "canary promoted automatically", f: followUpdate, state: canary, old: 2, config: autoPromote},
		{name: "rollback running", f: followRollback, state: rbStarted},
		{name: "rollback completed", f: followRollback, state: rbComplete, done: true},
		{name: "rollback paused", f: followRollback, state: rbPaused, msg: "1 of 3 failed", stopped: "rollback paused: 1 of 3 failed"},
		{name: "rollback replaced by an update", f: followRollback, state: updating, stopped: "the rollback was replaced by an update to version 2 (now updating)"},
		{name: "convergence only", f: followNone, state: paused, done: true},
	}
	for _, c := range cases {
		view, tasks := rolloutView(c.state, c.msg, c.old, c.config)
		if c.canaryStarting {
			tasks[len(tasks)-1].Status.Ready = false
		}
		p := assess(view, tasks, c.f)
		if p.done != c.done || !strings.Contains(p.stopped, c.stopped) || (c.stopped == "") != (p.stopped == "") ||
			!strings.Contains(p.canary, c.canary) || (c.canary == "") != (p.canary == "") {
			t.Errorf("%s: done %v stopped %q canary %q; want %v, %q, %q", c.name, p.done, p.stopped, p.canary, c.done, c.stopped, c.canary)
		}
	}
}

// The progress display and `service ps` show the rollout's state line.
func TestUpdateLine(t *testing.T) {
	cases := []struct {
		state  shoalpb.UpdateState
		msg    string
		old    int
		config *shoalpb.UpdateConfig
		want   string
	}{
		{shoalpb.UpdateState_UPDATE_STATE_UPDATING, "", 1, &shoalpb.UpdateConfig{Parallelism: 1, Order: shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST},
			"update: updating 2/3 (start-first, parallelism 1)"},
		{shoalpb.UpdateState_UPDATE_STATE_CANARY, "", 2, &shoalpb.UpdateConfig{Canary: 1},
			"update: canary 1/3 (stop-first, all at once, canary 1)"},
		{shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED, "rollback paused: 2 of 3 failed", 3, nil,
			"update: rollback_paused 0/3 (stop-first, parallelism 1) — rollback paused: 2 of 3 failed"},
	}
	for _, c := range cases {
		view, tasks := rolloutView(c.state, c.msg, c.old, c.config)
		if got := assess(view, tasks, followNone).update; got != c.want {
			t.Errorf("%v: %q, want %q", c.state, got, c.want)
		}
	}
}

// A stack deploy waits while any service converges, and then fails if one
// service's update was rolled back (Docker Swarm exits 0 there), even when
// every other service converged.
func TestJudgeStack(t *testing.T) {
	row := func(name string, state shoalpb.UpdateState, msg string, old int, f follow) stackRow {
		view, tasks := rolloutView(state, msg, old, nil)
		return stackRow{name: name, p: assess(view, tasks, f)}
	}
	converged := row("words_db", shoalpb.UpdateState_UPDATE_STATE_COMPLETED, "", 0, followUpdate)
	rolledBack := row("words_web", shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED, "task web.1.t1 failed its health check", 3, followUpdate)
	updating := row("words_app", shoalpb.UpdateState_UPDATE_STATE_UPDATING, "", 1, followUpdate)
	waiting := row("words_api", shoalpb.UpdateState_UPDATE_STATE_UPDATING, "", 1, followUpdate)
	waiting.waiting = "waiting for words_db to be healthy (0 of 1 ready)"

	text, pending, failed := judgeStack([]stackRow{converged, rolledBack, updating, waiting})
	if !slices.Equal(pending, []string{"words_app", "words_api"}) || len(failed) != 1 ||
		!strings.Contains(failed[0], "words_web: update rolled back: task web.1.t1 failed its health check") {
		t.Fatalf("pending %q, failed %q; want app and api pending, web rolled back", pending, failed)
	}
	if !strings.Contains(text, "words_api: 2 out of 3 tasks running and ready — waiting for words_db to be healthy") {
		t.Errorf("the display does not say what words_api waits for:\n%s", text)
	}
	if _, pending, failed = judgeStack([]stackRow{converged, rolledBack}); len(pending) != 0 || len(failed) != 1 {
		t.Errorf("with the rest converged: pending %q, failed %q; want the rolled-back service to fail the deploy", pending, failed)
	}
	if _, pending, failed = judgeStack([]stackRow{converged}); len(pending) != 0 || len(failed) != 0 {
		t.Errorf("a converged stack: pending %q, failed %q; want neither", pending, failed)
	}
}
