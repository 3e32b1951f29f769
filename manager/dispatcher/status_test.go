package dispatcher

import (
	"testing"

	shoalpb "shoal/proto"
)

func TestAdvances(t *testing.T) {
	const (
		assigned = shoalpb.TaskState_TASK_STATE_ASSIGNED
		starting = shoalpb.TaskState_TASK_STATE_STARTING
		running  = shoalpb.TaskState_TASK_STATE_RUNNING
		complete = shoalpb.TaskState_TASK_STATE_COMPLETE
		failed   = shoalpb.TaskState_TASK_STATE_FAILED
		shutdown = shoalpb.TaskState_TASK_STATE_SHUTDOWN
		orphaned = shoalpb.TaskState_TASK_STATE_ORPHANED
	)
	cases := []struct {
		cur, next shoalpb.TaskState
		want      bool
	}{
		{assigned, starting, true},
		{starting, running, true},
		{running, starting, false},
		{running, running, false},
		{running, failed, true},
		{failed, running, false},
		{complete, failed, false},
		{orphaned, shutdown, true},
		{orphaned, running, false},
		{orphaned, orphaned, false},
	}
	for _, c := range cases {
		got := advances(&shoalpb.TaskStatus{State: c.cur}, &shoalpb.TaskStatus{State: c.next})
		if got != c.want {
			t.Fatalf("%v -> %v: got %v, want %v", c.cur, c.next, got, c.want)
		}
	}
	// Health and readiness change while the task stays RUNNING.
	healthy := &shoalpb.TaskStatus{State: running, Health: shoalpb.HealthState_HEALTH_HEALTHY, Ready: true}
	for _, c := range []struct {
		cur, next *shoalpb.TaskStatus
		want      bool
	}{
		{&shoalpb.TaskStatus{State: running, Health: shoalpb.HealthState_HEALTH_STARTING}, healthy, true},
		{healthy, &shoalpb.TaskStatus{State: running, Health: shoalpb.HealthState_HEALTH_HEALTHY}, true},
		{healthy, healthy, false},
		{&shoalpb.TaskStatus{State: starting}, &shoalpb.TaskStatus{State: starting, Ready: true}, false},
	} {
		if got := advances(c.cur, c.next); got != c.want {
			t.Fatalf("%v -> %v: got %v, want %v", c.cur, c.next, got, c.want)
		}
	}
	if advances(&shoalpb.TaskStatus{State: running}, nil) {
		t.Fatal("a nil report must not advance a task")
	}
}
