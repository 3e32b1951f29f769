package main

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// `service ps` shows a running task's health and readiness after its state.
func TestPsShowsHealthAndReadiness(t *testing.T) {
	now := time.Now()
	running := shoalpb.TaskState_TASK_STATE_RUNNING
	readiness := &shoalpb.ContainerSpec{Readiness: &shoalpb.HealthCheck{TcpPort: 80}}
	cases := []struct {
		state  shoalpb.TaskState
		health shoalpb.HealthState
		ready  bool
		spec   *shoalpb.ContainerSpec
		want   string
	}{
		{running, shoalpb.HealthState_HEALTH_NONE, true, nil, "running 5 seconds ago"},
		{running, shoalpb.HealthState_HEALTH_STARTING, false, nil, "running 5 seconds ago (starting)"},
		{running, shoalpb.HealthState_HEALTH_HEALTHY, true, nil, "running 5 seconds ago (healthy, ready)"},
		{running, shoalpb.HealthState_HEALTH_HEALTHY, false, readiness, "running 5 seconds ago (healthy, not ready)"},
		{running, shoalpb.HealthState_HEALTH_UNHEALTHY, false, nil, "running 5 seconds ago (unhealthy)"},
		{running, shoalpb.HealthState_HEALTH_NONE, false, readiness, "running 5 seconds ago (not ready)"},
		{running, shoalpb.HealthState_HEALTH_NONE, true, readiness, "running 5 seconds ago (ready)"},
		{shoalpb.TaskState_TASK_STATE_FAILED, shoalpb.HealthState_HEALTH_UNHEALTHY, false, nil, "failed 5 seconds ago"},
	}
	for _, c := range cases {
		task := &shoalpb.Task{Id: "t1", ServiceName: "web", Slot: 1, Spec: &shoalpb.TaskSpec{Container: c.spec},
			Status: &shoalpb.TaskStatus{State: c.state, Health: c.health, Ready: c.ready, Timestamp: timestamppb.New(now.Add(-5 * time.Second))}}
		rows := taskRows([]*shoalpb.Task{task}, nil, now)
		if got := rows[0].CurrentState; got != c.want {
			t.Errorf("%v %v ready=%v: %q, want %q", c.state, c.health, c.ready, got, c.want)
		}
	}
}
