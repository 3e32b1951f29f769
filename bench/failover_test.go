package bench

import (
	"context"
	"strconv"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// BenchmarkLeaderFailover measures how long the cluster refuses writes when
// its leader dies: with 3 managers, kill -9 the leader, then write through
// another manager (UpdateNode with a label change, what `shoal node update
// --label-add` sends) every pollInterval until one succeeds. The figure runs
// from the SIGKILL to the return of the first successful write; a write that
// waits for a leader inside the manager counts as waiting.
//
// One failover per run; the killed manager is restarted after the sample
// and the next run starts once the cluster is healthy again, so `-count N`
// gives N samples on one cluster.
func BenchmarkLeaderFailover(b *testing.B) {
	c := testutil.NewCluster(b, 3, 0)
	b.Run("managers=3", func(b *testing.B) {
		var samples []float64
		for b.Loop() {
			samples = append(samples, ms(failover(b, c)))
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(median(samples), "ms/failover")
	})
}

// failover kills the leader, times the first write through a survivor, then
// restarts the killed manager and waits until the cluster is healthy.
func failover(b *testing.B, c *testutil.Cluster) time.Duration {
	b.Helper()
	leader := c.Leader(b)
	var survivor *testutil.Node
	for _, m := range c.Managers {
		if m != leader {
			survivor = m
			break
		}
	}
	cli := readyControl(b, survivor)
	attempt := 0
	start := time.Now()
	leader.Kill(b)
	took := pollUntil(b, start, "successful write through "+survivor.Name+" after killing leader "+leader.Name,
		func(ctx context.Context) (bool, error) {
			attempt++
			// A new value every attempt: an update that changes nothing
			// succeeds without a write.
			value := strconv.FormatInt(start.UnixNano(), 36) + "-" + strconv.Itoa(attempt)
			_, err := cli.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{
				Node:     "self",
				LabelAdd: map[string]string{"bench-failover": value},
			})
			return err == nil, err
		})
	b.Logf("killed leader %s; first write through %s after %s (%d attempts)", leader.Name, survivor.Name, took.Round(time.Millisecond), attempt)
	leader.Restart(b)
	c.WaitHealthy(b)
	return took
}
