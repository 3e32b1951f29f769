package scheduler

import (
	"fmt"
	"testing"

	shoalpb "shoal/proto"
)

// BenchmarkPlaceTasks places 100,000 tasks — one service, 100 services of
// 1,000, or 10,000 of 10 — on 1,000 and 5,000 nodes that already run 5 tasks each. Every
// fourth service spreads over zones, every third avoids managers, and all
// reserve CPU and memory, so each filter and the preference tree are on the
// path. Run with: go test -run '^$' -bench . -benchtime 1x -count 3 ./scheduler/
func BenchmarkPlaceTasks(b *testing.B) {
	shapes := []struct {
		name                 string
		services, perService int
		spread               bool
	}{
		{"services=1x100000", 1, 100_000, false},
		{"services=100x1000", 100, 1_000, false},
		{"services=1x100000-spread", 1, 100_000, true},
		{"services=10000x10", 10_000, 10, false}, // many small groups: a node pass each
	}
	for _, nodes := range []int{1_000, 5_000} {
		for _, shape := range shapes {
			b.Run(fmt.Sprintf("nodes=%d/%s", nodes, shape.name), func(b *testing.B) {
				c := benchCluster(nodes)
				pending := benchPending(shape.services, shape.perService, shape.spread)
				b.ReportAllocs()
				b.ResetTimer()
				var ds []Decision
				for range b.N {
					ds = PlaceTasks(c, pending)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*len(pending))/b.Elapsed().Seconds(), "placements/s")
				for _, d := range ds {
					if d.NodeID == "" {
						b.Fatalf("task %s not placed: %s", d.TaskID, d.Explanation)
					}
				}
			})
		}
	}
}

// benchCluster returns n nodes with 64 CPUs and 256 GiB in 3 zones, one in 50
// a manager, each running 5 tasks.
func benchCluster(n int) Cluster {
	var c Cluster
	for i := range n {
		id := fmt.Sprintf("node-%05d", i)
		opts := []nodeOpt{capacity(64*cpu, 256*gib), label("zone", fmt.Sprintf("z%d", i%3))}
		if i%50 == 0 {
			opts = append(opts, manager())
		}
		c.Nodes = append(c.Nodes, mkNode(id, opts...))
		for j := range 5 {
			c.Tasks = append(c.Tasks, mkTask(fmt.Sprintf("%s-r%d", id, j), fmt.Sprintf("base-%d", j), reserve(cpu/2, gib), running(id)))
		}
	}
	return c
}

// benchPending returns services×perService pending tasks, service by service.
func benchPending(services, perService int, forceSpread bool) []*shoalpb.Task {
	pending := make([]*shoalpb.Task, 0, services*perService)
	for s := range services {
		opts := []taskOpt{reserve(cpu/20, 64<<20)}
		if forceSpread || s%4 == 1 {
			opts = append(opts, spread("node.labels.zone"))
		}
		if s%3 == 2 {
			opts = append(opts, constraints("node.role!=manager"))
		}
		pending = append(pending, mkTasks(fmt.Sprintf("svc-%03d", s), perService, opts...)...)
	}
	return pending
}
