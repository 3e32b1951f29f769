package exec

import (
	"context"
	"fmt"
	"testing"
	"time"

	shoalpb "shoal/proto"
)

// BenchmarkTaskStart measures the executor's own work per task, from an
// assignment to the task's RUNNING report, over a runtime that does nothing (fakeRuntime):
// the controller's steps, the records it persists and the reports it
// batches. Tasks arrive 100 per message, as the dispatcher sends them, and
// run a realistic spec; they stay running until the benchmark ends, so the
// controllers of b.N tasks are alive at once, as on a busy node.
func BenchmarkTaskStart(b *testing.B) {
	e := New(Config{DataDir: b.TempDir(), NodeID: "node-1", Runtime: &fakeRuntime{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	spec := &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{
		Image:   "registry.example.com/team/web:1.4.2",
		Command: []string{"/usr/local/bin/web", "--listen", ":8080", "--workers", "4"},
		Env:     []string{"LOG_LEVEL=info", "DATABASE_URL=postgres://db.internal:5432/app", "CACHE_URL=redis://cache.internal:6379"},
		Labels:  map[string]string{"team": "web", "tier": "frontend"},
	}}

	b.ReportAllocs()
	b.ResetTimer()
	running := 0
	for i := 0; i < b.N; i += 100 {
		msg := &shoalpb.AssignmentsMessage{}
		for j := i; j < min(i+100, b.N); j++ {
			msg.Update = append(msg.Update, &shoalpb.Task{
				Id: fmt.Sprintf("task-%08d", j), ServiceId: "svc-id", ServiceName: "web", Slot: uint64(j + 1), NodeId: "node-1",
				DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
				Status:       &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_ASSIGNED},
				Spec:         spec,
			})
		}
		e.Assign(msg)
	}
	timeout := time.After(time.Minute)
	for running < b.N {
		select {
		case batch := <-e.Updates():
			for _, u := range batch {
				if u.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_RUNNING {
					running++
				}
			}
		case <-timeout:
			b.Fatalf("%d of %d tasks running after a minute", running, b.N)
		}
	}
}
