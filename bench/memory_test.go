package bench

import (
	"testing"
	"time"

	"shoal/internal/testutil"
)

// idleFor is how long the cluster idles before each memory sample.
const idleFor = 10 * time.Second

// BenchmarkIdleMemory reports the resident memory (VmRSS from
// /proc/PID/status) of an idle manager and an idle worker of a 1-manager +
// 1-worker cluster, sampled after idleFor without requests. Run N is taken
// N×idleFor after the cluster became healthy.
func BenchmarkIdleMemory(b *testing.B) {
	c := testutil.NewCluster(b, 1, 1)
	manager, worker := c.Managers[0], c.Workers[0]
	b.Run("managers=1/workers=1", func(b *testing.B) {
		var mgr, wrk []float64
		for b.Loop() {
			time.Sleep(idleFor)
			for _, s := range []struct {
				n   *testutil.Node
				out *[]float64
			}{{manager, &mgr}, {worker, &wrk}} {
				mib, err := procStatusMiB(s.n.PID(), "VmRSS")
				if err != nil {
					b.Fatalf("%s: %v", s.n.Name, err)
				}
				*s.out = append(*s.out, mib)
			}
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(median(mgr), "MiB-manager")
		b.ReportMetric(median(wrk), "MiB-worker")
	})
}
