package orchestrator

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// TestReplicatedConverges runs random sequences of user and cluster changes
// (scale, spec update, task failures, nodes going down, coming back, being
// drained) against the replicated reconciler with a toy scheduler and agent,
// and checks that every sequence settles in a few rounds on a state where
// each slot holds at most one runnable task, the service runs exactly its
// replicas, every runnable task is current (when a node can run it), and no
// slot keeps more history than the limit.
func TestReplicatedConverges(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		svc := service("a", replMode, 3)
		nodes := []*shoalpb.Node{node("n1"), node("n2"), node("n3")}
		var tasks []*shoalpb.Task
		now := t0
		newID := counter()
		for step := 0; step < 60; step++ {
			switch rng.IntN(6) {
			case 0:
				svc = proto.Clone(svc).(*shoalpb.Service)
				svc.Spec.Replicas = uint64(rng.IntN(7))
				svc.SpecVersion++
			case 1:
				svc = proto.Clone(svc).(*shoalpb.Service)
				svc.SpecVersion++
				svc.Spec.Task.Container.Image = fmt.Sprintf("app:%d", svc.SpecVersion)
			case 2, 3:
				if len(tasks) > 0 {
					i := rng.IntN(len(tasks))
					if isRunnable(tasks[i]) && tasks[i].NodeId != "" {
						tasks = setStatus(tasks, i, []shoalpb.TaskState{failed, complete, rejected}[rng.IntN(3)], now)
					}
				}
			case 4:
				n := proto.Clone(nodes[rng.IntN(3)]).(*shoalpb.Node)
				if n.Status.State == nodeReady {
					n.Status.State = shoalpb.NodeState_NODE_STATE_DOWN
				} else {
					n.Status.State = nodeReady
				}
				nodes = replaceNode(nodes, n)
			case 5:
				n := proto.Clone(nodes[rng.IntN(3)]).(*shoalpb.Node)
				if n.Spec.Availability == shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE {
					n.Spec.Availability = shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
				} else {
					n.Spec.Availability = shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE
				}
				nodes = replaceNode(nodes, n)
			}
			settled := false
			for round := 0; round < 20 && !settled; round++ {
				now = now.Add(time.Minute) // past any restart delay
				p := Reconcile(Input{Service: svc, Tasks: tasks, Nodes: nodes, Now: now, NewID: newID})
				tasks = applyPlan(tasks, p)
				moved := simulateCluster(tasks, nodes, now)
				settled = p.Empty() && !moved
			}
			if !settled {
				t.Fatalf("seed %d step %d: no fixed point after 20 rounds", seed, step)
			}
			checkSettled(t, seed, step, svc, tasks, nodes)
		}
	}
}

func setStatus(tasks []*shoalpb.Task, i int, st shoalpb.TaskState, now time.Time) []*shoalpb.Task {
	c := proto.Clone(tasks[i]).(*shoalpb.Task)
	c.Status = &shoalpb.TaskStatus{State: st, Timestamp: timestamppb.New(now)}
	out := append([]*shoalpb.Task(nil), tasks...)
	out[i] = c
	return out
}

func replaceNode(nodes []*shoalpb.Node, n *shoalpb.Node) []*shoalpb.Node {
	out := append([]*shoalpb.Node(nil), nodes...)
	for i := range out {
		if out[i].Id == n.Id {
			out[i] = n
		}
	}
	return out
}

// simulateCluster plays scheduler and agents in place: pending tasks go to
// the usable node with the fewest tasks, or say there is none; agents on
// ready nodes run what is assigned (ready at once) and stop what is no
// longer wanted. It reports whether anything changed.
func simulateCluster(tasks []*shoalpb.Task, nodes []*shoalpb.Node, now time.Time) bool {
	moved := false
	load := map[string]int{}
	for _, t := range tasks {
		if isRunnable(t) && t.NodeId != "" {
			load[t.NodeId]++
		}
	}
	ready := map[string]bool{}
	for _, n := range nodes {
		ready[n.Id] = n.Status.State == nodeReady
	}
	for i, t := range tasks {
		switch {
		case isPending(t):
			best := ""
			for _, n := range nodes {
				if conditionOf(n, now) == nodeUsable && (best == "" || load[n.Id] < load[best]) {
					best = n.Id
				}
			}
			if best == "" {
				if t.Status.Message != "no suitable node" { // as the scheduler explains it
					c := proto.Clone(t).(*shoalpb.Task)
					c.Status.Message = "no suitable node"
					tasks[i] = c
					moved = true
				}
				continue
			}
			c := proto.Clone(t).(*shoalpb.Task)
			c.NodeId = best
			c.Status = &shoalpb.TaskStatus{State: assigned, Timestamp: timestamppb.New(now)}
			tasks[i] = c
			load[best]++
			moved = true
		case !ready[t.NodeId] || isDead(t):
		case t.DesiredState == shoalpb.TaskState_TASK_STATE_RUNNING && t.Status.State < running:
			tasks[i] = setStatus(tasks, i, running, now)[i]
			tasks[i].Status.Ready = true // no checks: ready once running
			moved = true
		case t.DesiredState > shoalpb.TaskState_TASK_STATE_RUNNING:
			tasks[i] = setStatus(tasks, i, shutdown, now)[i]
			moved = true
		}
	}
	return moved
}

func checkSettled(t *testing.T, seed uint64, step int, svc *shoalpb.Service, tasks []*shoalpb.Task, nodes []*shoalpb.Node) {
	t.Helper()
	usable := false
	for _, n := range nodes {
		usable = usable || conditionOf(n, t0) == nodeUsable
	}
	perSlot := map[uint64]int{}
	dead := map[uint64]int{}
	runnable := 0
	for _, x := range tasks {
		if isDead(x) {
			dead[x.Slot]++
		}
		if !isRunnable(x) {
			continue
		}
		runnable++
		perSlot[x.Slot]++
		if perSlot[x.Slot] > 1 {
			t.Fatalf("seed %d step %d: slot %d holds two runnable tasks", seed, step, x.Slot)
		}
		if usable && !proto.Equal(x.Spec, svc.Spec.Task) {
			t.Fatalf("seed %d step %d: task %s still runs image %s, service at %s", seed, step, x.Id, x.Spec.GetContainer().GetImage(), svc.Spec.Task.Container.Image)
		}
	}
	if runnable != int(svc.Spec.Replicas) {
		t.Fatalf("seed %d step %d: %d runnable tasks, want %d", seed, step, runnable, svc.Spec.Replicas)
	}
	for slot, n := range dead {
		if n > DefaultTaskHistoryLimit {
			t.Fatalf("seed %d step %d: slot %d keeps %d dead tasks", seed, step, slot, n)
		}
	}
}
