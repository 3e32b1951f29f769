package scheduler

import (
	"fmt"
	"sort"
	"strings"

	shoalpb "shoal/proto"
)

const (
	gib = int64(1) << 30
	cpu = int64(1e9) // one CPU in nano CPUs
)

type nodeOpt func(*shoalpb.Node)

// mkNode returns a ready, active worker with 4 CPUs and 8 GiB.
func mkNode(id string, opts ...nodeOpt) *shoalpb.Node {
	n := &shoalpb.Node{
		Id:          id,
		Role:        shoalpb.NodeRole_NODE_ROLE_WORKER,
		Spec:        &shoalpb.NodeSpec{Labels: map[string]string{}},
		Description: &shoalpb.NodeDescription{Hostname: id, Os: "linux", Arch: "amd64", NanoCpus: 4 * cpu, MemoryBytes: 8 * gib},
		Status:      &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_READY},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func label(k, v string) nodeOpt { return func(n *shoalpb.Node) { n.Spec.Labels[k] = v } }

func down() nodeOpt {
	return func(n *shoalpb.Node) { n.Status.State = shoalpb.NodeState_NODE_STATE_DOWN }
}

func availability(a shoalpb.NodeAvailability) nodeOpt {
	return func(n *shoalpb.Node) { n.Spec.Availability = a }
}

func manager() nodeOpt { return func(n *shoalpb.Node) { n.Role = shoalpb.NodeRole_NODE_ROLE_MANAGER } }

func capacity(cpus, mem int64) nodeOpt {
	return func(n *shoalpb.Node) { n.Description.NanoCpus, n.Description.MemoryBytes = cpus, mem }
}

type taskOpt func(*shoalpb.Task)

// mkTask returns a pending task of service svc with an empty spec.
func mkTask(id, svc string, opts ...taskOpt) *shoalpb.Task {
	t := &shoalpb.Task{
		Id:           id,
		ServiceId:    svc,
		Spec:         &shoalpb.TaskSpec{Placement: &shoalpb.Placement{}},
		DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
		Status:       &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_PENDING},
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// mkTasks returns n pending tasks of svc named svc-1 … svc-n.
func mkTasks(svc string, n int, opts ...taskOpt) []*shoalpb.Task {
	out := make([]*shoalpb.Task, n)
	for i := range out {
		out[i] = mkTask(fmt.Sprintf("%s-%d", svc, i+1), svc, opts...)
	}
	return out
}

func reserve(cpus, mem int64) taskOpt {
	return func(t *shoalpb.Task) {
		t.Spec.Resources = &shoalpb.Resources{Reservations: &shoalpb.ResourceSet{NanoCpus: cpus, MemoryBytes: mem}}
	}
}

func publish(port uint32, protocol string) taskOpt {
	return func(t *shoalpb.Task) {
		t.Spec.Ports = append(t.Spec.Ports, &shoalpb.PortConfig{Protocol: protocol, TargetPort: 80, PublishedPort: port, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST})
	}
}

func constraints(cs ...string) taskOpt {
	return func(t *shoalpb.Task) { t.Spec.Placement.Constraints = append(t.Spec.Placement.Constraints, cs...) }
}

func maxPerNode(n uint64) taskOpt {
	return func(t *shoalpb.Task) { t.Spec.Placement.MaxReplicasPerNode = n }
}

func spread(keys ...string) taskOpt {
	return func(t *shoalpb.Task) {
		for _, k := range keys {
			t.Spec.Placement.Preferences = append(t.Spec.Placement.Preferences, &shoalpb.PlacementPreference{Spread: k})
		}
	}
}

// onNode presets the node, as the global orchestrator does.
func onNode(id string) taskOpt { return func(t *shoalpb.Task) { t.NodeId = id } }

// running makes the task one that holds resources on node id.
func running(id string) taskOpt {
	return func(t *shoalpb.Task) {
		t.NodeId = id
		t.Status.State = shoalpb.TaskState_TASK_STATE_RUNNING
	}
}

// placements counts decisions per node ID.
func placements(ds []Decision) map[string]int {
	out := make(map[string]int)
	for _, d := range ds {
		if d.NodeID != "" {
			out[d.NodeID]++
		}
	}
	return out
}

// summary renders decisions compactly for failure messages.
func summary(ds []Decision) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		if d.NodeID != "" {
			parts[i] = d.TaskID + "→" + d.NodeID
		} else {
			parts[i] = d.TaskID + ": " + d.Explanation
		}
	}
	return strings.Join(parts, "\n")
}

// countsString renders a map of counts deterministically, e.g. "a=2 b=2".
func countsString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
