package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// containerReplicas is the size of the service BenchmarkContainers starts.
const containerReplicas = 50

// BenchmarkContainers measures what a user of one node waits for with real
// containers: a manager running the containerd runtime in a network
// namespace of its own (its own containerd, bridge and NAT), the words-db
// demo image loaded, then `service create --replicas 50` until ListTasks
// shows 50 tasks RUNNING (each container created from the image, given its
// namespace, veth and address, and started), and `scale 0` until all 50 have
// ended and been reported (each stopped with SIGTERM, its container deleted
// and its namespace removed). Each run uses a fresh service, with the
// image's health check switched off.
func BenchmarkContainers(b *testing.B) {
	testutil.RequireRoot(b, "containerd", "runc", "ip", "iptables", "nsenter")
	c := testutil.NewCluster(b, 1, 0, testutil.WithHosts(), testutil.WithDaemonArgs("--runtime", "containerd"))
	m := c.Managers[0]
	if _, err := m.Shoal(b, "image", "load", "-i", testutil.DemoImage(b, "words-db", "v1")); err != nil {
		b.Fatalf("image load: %v", err)
	}
	cli := readyControl(b, m)
	run := 0
	b.Run(fmt.Sprintf("replicas=%d", containerReplicas), func(b *testing.B) {
		var up, down []float64
		for b.Loop() {
			run++
			u, d := containersUpDown(b, cli, fmt.Sprintf("containers-%d", run))
			up, down = append(up, ms(u)), append(down, ms(d))
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(median(up), "ms/start-all")
		b.ReportMetric(median(down), "ms/stop-all")
	})
}

// containersUpDown creates the service, times it to all running, then
// scales it to 0 and times it to none running; it removes the service.
func containersUpDown(b *testing.B, cli shoalpb.ControlServiceClient, name string) (up, down time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	svc, err := cli.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: &shoalpb.ServiceSpec{
		Name:     name,
		Mode:     shoalpb.ServiceMode_SERVICE_MODE_REPLICATED,
		Replicas: containerReplicas,
		// The image's HEALTHCHECK (an exec every 2 s) is off: this
		// measures starting and stopping containers, not probing them.
		Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "words-db:v1", Healthcheck: &shoalpb.HealthCheck{Test: []string{"NONE"}}}},
	}})
	if err != nil {
		b.Fatalf("create %s: %v", name, err)
	}
	waitRunning(b, ctx, cli, svc.GetId(), containerReplicas)
	up = time.Since(start)

	start = time.Now()
	spec := svc.GetSpec()
	spec.Replicas = 0
	if _, err := cli.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: svc.GetId(), Version: svc.GetMeta().GetVersion(), Spec: spec}); err != nil {
		b.Fatalf("scale %s to 0: %v", name, err)
	}
	waitRunning(b, ctx, cli, svc.GetId(), 0)
	down = time.Since(start)
	if _, err := cli.RemoveService(ctx, &shoalpb.RemoveServiceRequest{Service: svc.GetId()}); err != nil {
		b.Fatalf("remove %s: %v", name, err)
	}
	return up, down
}

// waitRunning polls until exactly want tasks of the service run and every
// other task has ended (for want 0: none is left running or stopping).
func waitRunning(b *testing.B, ctx context.Context, cli shoalpb.ControlServiceClient, serviceID string, want int) {
	b.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		resp, err := cli.ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": serviceID}})
		if err == nil {
			running, live := 0, 0
			for _, t := range resp.GetTasks() {
				st := t.GetStatus().GetState()
				if st == shoalpb.TaskState_TASK_STATE_RUNNING {
					running++
				}
				if st < shoalpb.TaskState_TASK_STATE_COMPLETE {
					live++
				}
			}
			if running == want && live == want {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("service %s: %d tasks running and %d live after %s, want %d", serviceID, running, live, eventTimeout, want)
			}
		} else if time.Now().After(deadline) {
			b.Fatalf("list tasks: %v", err)
		}
		time.Sleep(pollInterval)
	}
}
