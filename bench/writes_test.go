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
	"google.golang.org/protobuf/proto"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// writeWindow is how long one run of BenchmarkControlWrites writes.
const writeWindow = 3 * time.Second

// writeServices is how many services object=own creates: one per client of
// the largest run.
const writeServices = 64

// BenchmarkControlWrites measures committed writes per second through the
// control API of a 3-manager cluster: Go gRPC clients on the managers' local
// sockets, each with its own connection, each changing a label in a loop.
//
// object=shared: client i calls UpdateNode on node object (i/3)%3 with its
// own label key, so about 21 clients race for each object (contended), and
// with via=all they race through all three managers.
// object=own: client i calls UpdateService on its own service (created with
// 0 replicas before the runs), the non-contended write: what `shoal service
// update --label-add` sends, one object per client.
//
// via=leader: every client talks to the leader. via=all: client i talks to
// manager i%3, so two thirds of the writes are forwarded by a follower.
// With one client, via=all alternates its requests over the three managers.
//
// Only successful writes count. Both calls are a read-modify-write with a
// version check that the manager retries when it loses a race; a request
// that still loses answers Aborted, reported as aborted/s. entries/s is the
// leader's Raft log growth: it includes refused conflicting proposals, so
// entries/s above writes/s is log bandwidth lost to conflicts. cpu-ms/write
// is the CPU time the three manager processes used per successful write.
func BenchmarkControlWrites(b *testing.B) {
	c := testutil.NewCluster(b, 3, 0)
	var nodes []string
	for _, m := range c.Managers {
		nodes = append(nodes, m.ID(b))
	}
	specs := createWriteServices(b, readyControl(b, c.Leader(b)))
	objects := []struct {
		name  string
		write writeFunc
	}{
		{"shared", updateNodeLabel(nodes)},
		{"own", updateServiceLabel(specs)},
	}
	for _, obj := range objects {
		for _, clients := range []int{1, 64} {
			for _, via := range []string{"leader", "all"} {
				b.Run(fmt.Sprintf("object=%s/clients=%d/via=%s", obj.name, clients, via), func(b *testing.B) {
					leader := c.Leader(b)
					servers := []*testutil.Node{leader}
					if via == "all" {
						servers = c.Managers
					}
					info := shoalpb.NewNodeServiceClient(conn(b, leader))
					var results []windowResult
					for b.Loop() {
						results = append(results, writeFor(b, info, c.Managers, servers, obj.write, clients, writeWindow))
					}
					b.ReportMetric(0, "ns/op")
					reportWrites(b, results)
				})
			}
		}
	}
}

// writeFunc makes write number j of client i through c, with a label value
// that differs from every earlier one (an update that changes nothing
// succeeds without a write).
type writeFunc func(ctx context.Context, c shoalpb.ControlServiceClient, i int, value string) error

// updateNodeLabel writes label bench-client-<i> of node nodes[(i/len)%len]:
// client i talks to manager i%3 with via=all, so consecutive clients write the
// same node through different managers.
func updateNodeLabel(nodes []string) writeFunc {
	return func(ctx context.Context, c shoalpb.ControlServiceClient, i int, value string) error {
		node := nodes[(i/len(nodes))%len(nodes)]
		_, err := c.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: node, LabelAdd: map[string]string{fmt.Sprintf("bench-client-%02d", i): value}})
		if err != nil {
			return fmt.Errorf("UpdateNode %s: %w", node, err)
		}
		return nil
	}
}

// updateServiceLabel writes label bench of client i's own service, whose
// spec is specs[i]. Each client owns its spec, so changing it in place needs
// no lock.
func updateServiceLabel(specs []*shoalpb.ServiceSpec) writeFunc {
	return func(ctx context.Context, c shoalpb.ControlServiceClient, i int, value string) error {
		spec := specs[i]
		spec.Labels["bench"] = value
		_, err := c.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: spec.Name, Spec: spec})
		if err != nil {
			return fmt.Errorf("UpdateService %s: %w", spec.Name, err)
		}
		return nil
	}
}

// createWriteServices creates writeServices replicated services with no
// replicas (nothing is scheduled) and returns their specs.
func createWriteServices(b *testing.B, c shoalpb.ControlServiceClient) []*shoalpb.ServiceSpec {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	specs := make([]*shoalpb.ServiceSpec, writeServices)
	for i := range specs {
		spec := &shoalpb.ServiceSpec{
			Name:   fmt.Sprintf("bench-write-%02d", i),
			Labels: map[string]string{"bench": "0"},
			Mode:   shoalpb.ServiceMode_SERVICE_MODE_REPLICATED,
			Task:   &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "bench", Command: []string{"true"}}},
		}
		if _, err := c.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: proto.Clone(spec).(*shoalpb.ServiceSpec)}); err != nil {
			b.Fatalf("create service %s: %v", spec.Name, err)
		}
		specs[i] = spec
	}
	return specs
}

// windowResult is what one window of writes achieved.
type windowResult struct {
	writes, aborted, entries float64 // per second
	p50, p99                 float64 // latency of successful writes, ms
	cpuPerWrite              float64 // managers' CPU time per successful write, ms
}

// writeFor runs clients concurrent writers for window and returns their
// rates. Client i goes through servers[i%len] (with one client, request j
// goes through servers[j%len]).
func writeFor(b *testing.B, info shoalpb.NodeServiceClient, managers, servers []*testutil.Node, write writeFunc, clients int, window time.Duration) windowResult {
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
	cpuBefore := managersCPU(b, managers)
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
			for j := 0; time.Now().Before(end); j++ {
				value := strconv.FormatInt(start.UnixNano(), 36) + "-" + strconv.Itoa(j)
				t0 := time.Now()
				err := write(ctx, cli[i][j%len(cli[i])], i, value)
				switch status.Code(err) {
				case codes.OK:
					t.ok++
					t.latencies = append(t.latencies, ms(time.Since(t0)))
				case codes.Aborted:
					t.aborted++
				default:
					t.err = fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu := managersCPU(b, managers) - cpuBefore
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
	if r.writes > 0 {
		r.cpuPerWrite = cpu * 1000 / r.writes
	}
	r.writes /= elapsed
	r.aborted /= elapsed
	r.entries = float64(after-before) / elapsed
	slices.Sort(latencies)
	r.p50, r.p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
	return r
}

// managersCPU is the CPU time, in seconds, the managers' processes have used.
func managersCPU(b *testing.B, managers []*testutil.Node) float64 {
	b.Helper()
	var total float64
	for _, m := range managers {
		cpu, err := processCPU(m.PID())
		if err != nil {
			b.Fatalf("%s: %v", m.Name, err)
		}
		total += cpu
	}
	return total
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
	b.ReportMetric(pick(func(r windowResult) float64 { return r.cpuPerWrite }), "cpu-ms/write")
}
