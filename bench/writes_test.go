package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// writeWindow is how long one run of BenchmarkControlWrites writes.
const writeWindow = 3 * time.Second

// BenchmarkControlWrites measures committed writes per second through the
// control API of a 3-manager cluster: Go gRPC clients on the managers' local
// sockets call ControlService.UpdateNode with a label change, each client
// with its own connection and label key, the clients spread round-robin over
// the three node objects (the only objects the API can write today).
//
// via=leader: every client talks to the leader. via=all: client i talks to
// manager i%3, so two thirds of the writes are forwarded by a follower.
// With one client, via=all alternates its requests over the three managers.
//
// Only successful writes count. UpdateNode is a read-modify-write with a
// version check; the manager retries a lost race up to 5 times and then
// answers Aborted, reported as aborted/s. entries/s is the leader's Raft log
// growth: it includes the refused conflicting proposals, so entries/s minus
// writes/s is the log bandwidth lost to conflicts.
func BenchmarkControlWrites(b *testing.B) {
	c := testutil.NewCluster(b, 3, 0)
	var targets []string
	for _, m := range c.Managers {
		targets = append(targets, m.ID(b))
	}
	for _, clients := range []int{1, 64} {
		for _, via := range []string{"leader", "all"} {
			b.Run(fmt.Sprintf("clients=%d/via=%s", clients, via), func(b *testing.B) {
				leader := c.Leader(b)
				servers := []*testutil.Node{leader}
				if via == "all" {
					servers = c.Managers
				}
				info := shoalpb.NewNodeServiceClient(conn(b, leader))
				var results []windowResult
				for b.Loop() {
					results = append(results, writeFor(b, info, servers, targets, clients, writeWindow))
				}
				b.ReportMetric(0, "ns/op")
				reportWrites(b, results)
			})
		}
	}
}

// windowResult is what one window of writes achieved.
type windowResult struct {
	writes, aborted, entries float64 // per second
	p50, p99                 float64 // latency of successful writes, ms
}

// writeFor runs clients concurrent writers for window and returns their
// rates. Client i writes node targets[i%len] through servers[i%len] (with one
// client, request j goes through servers[j%len]).
func writeFor(b *testing.B, info shoalpb.NodeServiceClient, servers []*testutil.Node, targets []string, clients int, window time.Duration) windowResult {
	b.Helper()
	// One connection per client and per server it uses, ready before the
	// clock starts.
	cli := make([][]shoalpb.ControlServiceClient, clients)
	for i := range cli {
		if clients == 1 {
			for _, s := range servers {
				cli[i] = append(cli[i], readyControl(b, s))
			}
		} else {
			cli[i] = []shoalpb.ControlServiceClient{readyControl(b, servers[i%len(servers)])}
		}
	}
	before := appliedIndex(b, info)
	type tally struct {
		ok, aborted int
		latencies   []float64
		err         error
	}
	tallies := make([]tally, clients)
	ctx, cancel := context.WithTimeout(context.Background(), window+30*time.Second)
	defer cancel()
	start := time.Now()
	end := start.Add(window)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[i]
			node := targets[i%len(targets)]
			key := fmt.Sprintf("bench-client-%02d", i)
			for j := 0; time.Now().Before(end); j++ {
				c := cli[i][j%len(cli[i])]
				// The value changes every call: an update that changes
				// nothing succeeds without a write.
				req := &shoalpb.UpdateNodeRequest{Node: node, LabelAdd: map[string]string{key: strconv.FormatInt(start.UnixNano(), 36) + "-" + strconv.Itoa(j)}}
				t0 := time.Now()
				_, err := c.UpdateNode(ctx, req)
				switch status.Code(err) {
				case codes.OK:
					t.ok++
					t.latencies = append(t.latencies, ms(time.Since(t0)))
				case codes.Aborted:
					t.aborted++
				default:
					t.err = fmt.Errorf("client %d: UpdateNode %s: %w", i, node, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	after := appliedIndex(b, info)
	var r windowResult
	var latencies []float64
	for _, t := range tallies {
		if t.err != nil {
			b.Fatal(t.err)
		}
		r.writes += float64(t.ok)
		r.aborted += float64(t.aborted)
		latencies = append(latencies, t.latencies...)
	}
	r.writes /= elapsed
	r.aborted /= elapsed
	r.entries = float64(after-before) / elapsed
	slices.Sort(latencies)
	r.p50, r.p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
	return r
}

// appliedIndex is the Raft index the node has applied.
func appliedIndex(b *testing.B, info shoalpb.NodeServiceClient) uint64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := info.Info(ctx, &shoalpb.InfoRequest{})
	if err != nil {
		b.Fatalf("node info: %v", err)
	}
	return resp.GetRaftAppliedIndex()
}

// percentile returns the p-quantile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// reportWrites reports the median of each rate over the windows of a run.
func reportWrites(b *testing.B, results []windowResult) {
	pick := func(f func(windowResult) float64) float64 {
		vals := make([]float64, len(results))
		for i, r := range results {
			vals[i] = f(r)
		}
		return median(vals)
	}
	b.ReportMetric(pick(func(r windowResult) float64 { return r.writes }), "writes/s")
	b.ReportMetric(pick(func(r windowResult) float64 { return r.aborted }), "aborted/s")
	b.ReportMetric(pick(func(r windowResult) float64 { return r.entries }), "entries/s")
	b.ReportMetric(pick(func(r windowResult) float64 { return r.p50 }), "p50-ms")
	b.ReportMetric(pick(func(r windowResult) float64 { return r.p99 }), "p99-ms")
}
