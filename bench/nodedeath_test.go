package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// nodeDeathReplicas is the size of the service BenchmarkNodeDeath runs: two
// tasks on each of its three workers.
const nodeDeathReplicas = 6

// BenchmarkNodeDeath measures how long the tasks of a dead worker take to
// run elsewhere: 3 managers + 3 workers (real processes, process runtime), a
// replicated service of nodeDeathReplicas `sleep` tasks constrained to the
// workers (the scheduler spreads them, two per worker), then kill -9 of one
// worker and ListTasks on the leader every pollInterval until
// nodeDeathReplicas tasks are RUNNING on the other nodes. The figure spans
// the detection of the dead node, the orchestrator's OrphanGrace, the new
// tasks' scheduling and their start on the surviving workers.
//
// One death per run, each on a fresh service: the worker is restarted, the
// cluster is healthy again and the service removed before the next run.
func BenchmarkNodeDeath(b *testing.B) {
	c := testutil.NewCluster(b, 3, 3)
	run := 0 // across the leaf's calls (-count): names services, picks the victim
	b.Run("workers=3", func(b *testing.B) {
		var samples []float64
		for b.Loop() {
			run++
			samples = append(samples, ms(nodeDeath(b, c, c.Workers[(run-1)%len(c.Workers)], run)))
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(median(samples), "ms/reschedule")
	})
}

// nodeDeath runs one sample: it kills victim once the service's tasks run on
// every worker and returns the time until they all run elsewhere.
func nodeDeath(b *testing.B, c *testutil.Cluster, victim *testutil.Node, run int) time.Duration {
	b.Helper()
	cli := readyControl(b, c.Leader(b))
	victimID := victim.ID(b)
	name := fmt.Sprintf("death-%d", run)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc, err := cli.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: &shoalpb.ServiceSpec{
		Name:     name,
		Mode:     shoalpb.ServiceMode_SERVICE_MODE_REPLICATED,
		Replicas: nodeDeathReplicas,
		Task: &shoalpb.TaskSpec{
			Container: &shoalpb.ContainerSpec{Image: "sleep", Command: []string{"sleep", "3600"}},
			Placement: &shoalpb.Placement{Constraints: []string{"node.role==worker"}},
		},
	}})
	if err != nil {
		b.Fatalf("service create %s: %v", name, err)
	}
	// running counts the service's tasks running, in all and on the victim.
	running := func(ctx context.Context) (all, onVictim int, err error) {
		resp, err := cli.ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": svc.Id}})
		if err != nil {
			return 0, 0, err
		}
		for _, t := range resp.Tasks {
			if t.GetDesiredState() != shoalpb.TaskState_TASK_STATE_RUNNING || t.GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			all++
			if t.GetNodeId() == victimID {
				onVictim++
			}
		}
		return all, onVictim, nil
	}
	pollUntil(b, time.Now(), fmt.Sprintf("%d tasks of %s running, some on %s", nodeDeathReplicas, name, victim.Name),
		func(ctx context.Context) (bool, error) {
			all, onVictim, err := running(ctx)
			return all == nodeDeathReplicas && onVictim > 0, err
		})

	start := time.Now()
	victim.Kill(b)
	took := pollUntil(b, start, fmt.Sprintf("%d tasks of %s running elsewhere after kill -9 of %s", nodeDeathReplicas, name, victim.Name),
		func(ctx context.Context) (bool, error) {
			all, onVictim, err := running(ctx)
			return all-onVictim == nodeDeathReplicas, err
		})
	b.Logf("killed %s; %d tasks of %s running elsewhere after %s", victim.Name, nodeDeathReplicas, name, took.Round(time.Millisecond))

	victim.Restart(b)
	c.WaitHealthy(b)
	if _, err := cli.RemoveService(ctx, &shoalpb.RemoveServiceRequest{Service: svc.Id}); err != nil {
		b.Fatalf("service rm %s: %v", name, err)
	}
	return took
}
