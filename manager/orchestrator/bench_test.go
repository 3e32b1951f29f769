package orchestrator

import (
	"fmt"
	"testing"

	shoalpb "shoal/proto"
)

// BenchmarkReconcileReplicated measures one pass over a large replicated
// service that needs nothing: 100,000 RUNNING, ready tasks over 1,000 nodes,
// each slot with one task of the current spec.
func BenchmarkReconcileReplicated(b *testing.B) {
	const replicas, nodeCount = 100_000, 1_000
	svc := service("big", replMode, replicas)
	nodes := make([]*shoalpb.Node, nodeCount)
	for i := range nodes {
		nodes[i] = node(fmt.Sprintf("n%04d", i))
	}
	tasks := make([]*shoalpb.Task, replicas)
	for i := range tasks {
		tasks[i] = task(fmt.Sprintf("t%06d", i), svc, uint64(i+1), nodes[i%nodeCount].Id, running)
		tasks[i].Status.Ready = true
	}
	in := Input{Service: svc, Tasks: tasks, Nodes: nodes, Now: t0, NewID: counter()}
	if p := Reconcile(in); !p.Empty() {
		b.Fatalf("plan: %v", summary(p))
	}
	b.ReportAllocs()
	for b.Loop() {
		Reconcile(in)
	}
}
