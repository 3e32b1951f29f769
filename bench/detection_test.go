package bench

import (
	"context"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// BenchmarkNodeFailureDetection measures how long a dead worker keeps
// showing as ready: in a 1-manager + 1-worker cluster, kill -9 the worker,
// then list the nodes on the manager (ListNodes, what `shoal node ls`
// sends) every pollInterval until the worker shows as down.
//
// One detection per run; the worker is restarted after the sample and the
// next run starts once it is ready again.
func BenchmarkNodeFailureDetection(b *testing.B) {
	c := testutil.NewCluster(b, 1, 1)
	manager, worker := c.Managers[0], c.Workers[0]
	id := worker.ID(b)
	cli := readyControl(b, manager)
	b.Run("worker", func(b *testing.B) {
		var samples []float64
		for b.Loop() {
			samples = append(samples, ms(detectDown(b, cli, worker, id)))
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(median(samples), "ms/detect")
	})
}

// detectDown kills worker, times until cli lists it down, then restarts it
// and waits until it is listed ready again.
func detectDown(b *testing.B, cli shoalpb.ControlServiceClient, worker *testutil.Node, id string) time.Duration {
	b.Helper()
	isState := func(want shoalpb.NodeState) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			st, err := nodeState(ctx, cli, id)
			return err == nil && st == want, err
		}
	}
	pollUntil(b, time.Now(), worker.Name+" ready before the kill", isState(shoalpb.NodeState_NODE_STATE_READY))
	start := time.Now()
	worker.Kill(b)
	took := pollUntil(b, start, worker.Name+" listed down after kill -9", isState(shoalpb.NodeState_NODE_STATE_DOWN))
	worker.Restart(b)
	pollUntil(b, time.Now(), worker.Name+" ready after its restart", isState(shoalpb.NodeState_NODE_STATE_READY))
	return took
}
