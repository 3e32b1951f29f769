package orchestrator

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
	"shoal/scheduler"
)

// isPending reports whether t waits for a node: status PENDING, desired
// RUNNING.
func isPending(t *shoalpb.Task) bool {
	return t.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_PENDING &&
		t.GetDesiredState() == shoalpb.TaskState_TASK_STATE_RUNNING
}

// Schedule places the pending tasks among tasks (every task of the cluster)
// on nodes with scheduler.PlaceTasks and returns the task updates to write,
// copies that keep their Meta:
//   - placed: node_id set, status ASSIGNED "assigned to <hostname or id>",
//     timestamped now;
//   - not placed: still PENDING, status.message set to the scheduler's
//     explanation. Only tasks whose message changes are returned, so a
//     cluster where nothing fits is not rewritten on every pass.
//
// Pending tasks are offered oldest first (then by service and slot), so the
// order is stable from pass to pass. Schedule is pure.
func Schedule(nodes []*shoalpb.Node, tasks []*shoalpb.Task, now time.Time) []*shoalpb.Task {
	var pending []*shoalpb.Task
	for _, t := range tasks {
		if isPending(t) {
			pending = append(pending, t)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	slices.SortFunc(pending, func(a, b *shoalpb.Task) int {
		if c := a.GetMeta().GetCreatedAt().AsTime().Compare(b.GetMeta().GetCreatedAt().AsTime()); c != 0 {
			return c
		}
		if c := strings.Compare(a.GetServiceId(), b.GetServiceId()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.GetSlot(), b.GetSlot()); c != 0 {
			return c
		}
		return strings.Compare(a.GetId(), b.GetId())
	})
	byID := make(map[string]*shoalpb.Task, len(pending))
	for _, t := range pending {
		byID[t.GetId()] = t
	}
	hostnames := make(map[string]string, len(nodes))
	for _, n := range nodes {
		hostnames[n.GetId()] = n.GetDescription().GetHostname()
	}
	var out []*shoalpb.Task
	for _, d := range scheduler.PlaceTasks(scheduler.Cluster{Nodes: nodes, Tasks: tasks}, pending) {
		t := byID[d.TaskID]
		if t == nil {
			continue
		}
		if d.NodeID == "" {
			if t.GetStatus().GetMessage() == d.Explanation {
				continue
			}
			c := proto.Clone(t).(*shoalpb.Task)
			c.Status.Message = d.Explanation
			out = append(out, c)
			continue
		}
		name := hostnames[d.NodeID]
		if name == "" {
			name = d.NodeID
		}
		c := proto.Clone(t).(*shoalpb.Task)
		c.NodeId = d.NodeID
		c.Status = &shoalpb.TaskStatus{
			State:     shoalpb.TaskState_TASK_STATE_ASSIGNED,
			Message:   "assigned to " + name,
			Timestamp: timestamppb.New(now),
		}
		out = append(out, c)
	}
	return out
}
