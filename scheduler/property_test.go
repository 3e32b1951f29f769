package scheduler

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	shoalpb "shoal/proto"
)

// The property test builds random clusters, places random batches, and checks
// the decisions against invariants and against a naive reference that scans
// every node for every task (O(tasks·nodes)) with the documented rules.

func TestPlaceTasksProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		c, pending := randomCluster(rng)
		got := PlaceTasks(c, pending)
		if err := checkInvariants(c, pending, got); err != nil {
			t.Fatalf("case %d: %v\n%s", i, err, summary(got))
		}
		want := referencePlace(c, pending)
		for j, d := range got {
			if d.NodeID != want[j] {
				t.Fatalf("case %d: task %s on %q, reference says %q\n%s", i, d.TaskID, d.NodeID, want[j], summary(got))
			}
		}
	}
}

func TestPlaceTasksDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 100 {
		c, pending := randomCluster(rng)
		first := PlaceTasks(c, pending)
		if again := PlaceTasks(c, pending); !slices.Equal(first, again) {
			t.Fatalf("case %d: same input, different output:\n%s\n---\n%s", i, summary(first), summary(again))
		}
		// Neither the order of the nodes nor that of the running tasks matters.
		shuffled := Cluster{Nodes: slices.Clone(c.Nodes), Tasks: slices.Clone(c.Tasks)}
		rng.Shuffle(len(shuffled.Nodes), func(a, b int) { shuffled.Nodes[a], shuffled.Nodes[b] = shuffled.Nodes[b], shuffled.Nodes[a] })
		rng.Shuffle(len(shuffled.Tasks), func(a, b int) { shuffled.Tasks[a], shuffled.Tasks[b] = shuffled.Tasks[b], shuffled.Tasks[a] })
		if again := PlaceTasks(shuffled, pending); !slices.Equal(first, again) {
			t.Fatalf("case %d: shuffled nodes, different output:\n%s\n---\n%s", i, summary(first), summary(again))
		}
	}
}

// randomCluster returns up to 24 nodes, tasks running on them within their
// limits, and up to 60 pending tasks of 6 services (one spec each, some global).
func randomCluster(rng *rand.Rand) (Cluster, []*shoalpb.Task) {
	var c Cluster
	for i := range rng.IntN(25) {
		var opts []nodeOpt
		if rng.IntN(8) == 0 {
			opts = append(opts, down())
		}
		switch rng.IntN(10) {
		case 0:
			opts = append(opts, pause)
		case 1:
			opts = append(opts, drain)
		}
		if rng.IntN(5) == 0 {
			opts = append(opts, manager())
		}
		if z := rng.IntN(4); z < 3 {
			opts = append(opts, label("zone", string(rune('a'+z))))
		}
		if r := rng.IntN(3); r < 2 {
			opts = append(opts, label("rack", strconv.Itoa(r+1)))
		}
		opts = append(opts, capacity(int64(1+rng.IntN(8))*cpu, int64(1+rng.IntN(16))*gib))
		n := mkNode(fmt.Sprintf("n%02d", i), opts...)
		if rng.IntN(4) == 0 {
			n.Description.Arch = "arm64"
		}
		c.Nodes = append(c.Nodes, n)
	}
	rng.Shuffle(len(c.Nodes), func(a, b int) { c.Nodes[a], c.Nodes[b] = c.Nodes[b], c.Nodes[a] })

	type service struct {
		opts   []taskOpt
		global bool
	}
	services := make([]service, 6)
	for i := range services {
		s := &services[i]
		s.global = rng.IntN(5) == 0
		if rng.IntN(2) == 0 {
			s.opts = append(s.opts, reserve(int64(rng.IntN(20))*cpu/10, int64(rng.IntN(16))*gib/4))
		}
		if rng.IntN(3) == 0 {
			s.opts = append(s.opts, publish(uint32(80+rng.IntN(2)), []string{"tcp", "udp", ""}[rng.IntN(3)]))
		}
		if rng.IntN(3) == 0 {
			s.opts = append(s.opts, constraints([]string{"node.labels.zone==a", "node.labels.zone!=b", "node.role!=manager", "node.platform.arch==amd64"}[rng.IntN(4)]))
		}
		if rng.IntN(30) == 0 {
			s.opts = append(s.opts, constraints("node.zone==a"))
		}
		if rng.IntN(3) == 0 {
			s.opts = append(s.opts, maxPerNode(uint64(1+rng.IntN(3))))
		}
		switch rng.IntN(6) {
		case 0, 1:
			s.opts = append(s.opts, spread("node.labels.zone"))
		case 2:
			s.opts = append(s.opts, spread("node.labels.zone", "node.labels.rack"))
		}
	}

	// Running tasks, kept within each node's limits.
	use := newModel(c, nil)
	for i := range rng.IntN(40) {
		svc := rng.IntN(len(services))
		task := mkTask(fmt.Sprintf("r%d", i), fmt.Sprintf("s%d", svc), services[svc].opts...)
		switch {
		case len(c.Nodes) == 0 || rng.IntN(10) == 0:
			task.NodeId = "ghost"
		default:
			task.NodeId = c.Nodes[rng.IntN(len(c.Nodes))].Id
		}
		task.Status.State = []shoalpb.TaskState{shoalpb.TaskState_TASK_STATE_ASSIGNED, shoalpb.TaskState_TASK_STATE_RUNNING, shoalpb.TaskState_TASK_STATE_FAILED}[rng.IntN(3)]
		if u := use[task.NodeId]; u != nil && HoldsResources(task) {
			if !u.dynamicFits(task) {
				continue
			}
			u.add(task)
		}
		c.Tasks = append(c.Tasks, task)
	}

	var pending []*shoalpb.Task
	for i := range rng.IntN(61) {
		svc := rng.IntN(len(services))
		task := mkTask(fmt.Sprintf("p%02d", i), fmt.Sprintf("s%d", svc), services[svc].opts...)
		if rng.IntN(20) == 0 {
			task.Status.State = shoalpb.TaskState_TASK_STATE_ASSIGNED // not pending: no decision
		}
		if services[svc].global {
			task.NodeId = "ghost"
			if len(c.Nodes) > 0 && rng.IntN(10) > 0 {
				task.NodeId = c.Nodes[rng.IntN(len(c.Nodes))].Id
			}
			if IsPending(task) && rng.IntN(2) == 0 { // the loop may list it among the running tasks too
				c.Tasks = append(c.Tasks, task)
			}
		}
		pending = append(pending, task)
	}
	return c, pending
}

// usage is the model's account of one node.
type usage struct {
	node     *shoalpb.Node
	cpu, mem int64
	ports    map[hostPort]bool
	svc      map[string]int
	total    int
}

type model map[string]*usage

// newModel charges the nodes of c with the tasks holding resources, except skip.
func newModel(c Cluster, skip map[string]bool) model {
	m := make(model)
	for _, n := range c.Nodes {
		m[n.Id] = &usage{node: n, ports: map[hostPort]bool{}, svc: map[string]int{}}
	}
	for _, t := range c.Tasks {
		if u := m[t.GetNodeId()]; u != nil && HoldsResources(t) && !skip[t.Id] {
			u.add(t)
		}
	}
	return m
}

func (u *usage) add(t *shoalpb.Task) {
	r := compile(t.ServiceId, t.Spec)
	u.cpu += r.cpu
	u.mem += r.mem
	for _, p := range r.ports {
		u.ports[p] = true
	}
	u.svc[t.ServiceId]++
	u.total++
}

func (u *usage) staticFits(t *shoalpb.Task) bool {
	if u.node.Status.State != shoalpb.NodeState_NODE_STATE_READY || u.node.Spec.Availability != shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE {
		return false
	}
	for _, s := range t.Spec.Placement.Constraints {
		c, err := ParseConstraint(s)
		if err != nil || !c.Match(u.node) {
			return false
		}
	}
	return true
}

func (u *usage) dynamicFits(t *shoalpb.Task) bool {
	r := compile(t.ServiceId, t.Spec)
	if u.cpu+r.cpu > u.node.Description.NanoCpus && r.cpu > 0 || u.mem+r.mem > u.node.Description.MemoryBytes && r.mem > 0 {
		return false
	}
	for _, p := range r.ports {
		if u.ports[p] {
			return false
		}
	}
	return r.maxPerNode == 0 || uint64(u.svc[t.ServiceId]) < r.maxPerNode
}

func (u *usage) fits(t *shoalpb.Task) bool { return u.staticFits(t) && u.dynamicFits(t) }

var nodeCount = regexp.MustCompile(`(\d+) nodes?\b`)

// checkInvariants replays the decisions on the model of the cluster.
func checkInvariants(c Cluster, pending []*shoalpb.Task, ds []Decision) error {
	var tasks []*shoalpb.Task
	skip := map[string]bool{}
	for _, t := range pending {
		if IsPending(t) {
			tasks = append(tasks, t)
			skip[t.Id] = true
		}
	}
	if len(ds) != len(tasks) {
		return fmt.Errorf("%d decisions for %d pending tasks", len(ds), len(tasks))
	}
	m := newModel(c, skip)
	for i, d := range ds {
		t := tasks[i]
		switch {
		case d.TaskID != t.Id:
			return fmt.Errorf("decision %d is for %s, want %s", i, d.TaskID, t.Id)
		case (d.NodeID == "") == (d.Explanation == ""):
			return fmt.Errorf("%s: want exactly one of node and explanation: %+v", t.Id, d)
		case d.NodeID != "" && t.NodeId != "" && d.NodeID != t.NodeId:
			return fmt.Errorf("%s: preset node %s, placed on %s", t.Id, t.NodeId, d.NodeID)
		case d.NodeID != "" && (m[d.NodeID] == nil || !m[d.NodeID].staticFits(t)):
			return fmt.Errorf("%s: placed on %s, which fails the static filters", t.Id, d.NodeID)
		case d.NodeID != "":
			m[d.NodeID].add(t)
		}
	}
	for id, u := range m {
		if u.cpu > u.node.Description.NanoCpus || u.mem > u.node.Description.MemoryBytes {
			return fmt.Errorf("node %s over capacity: %d/%d cpu, %d/%d memory", id, u.cpu, u.node.Description.NanoCpus, u.mem, u.node.Description.MemoryBytes)
		}
	}
	// Ports and max per node: recount from scratch, as add only sets.
	held := map[string]map[hostPort]int{}
	perNode := map[string]map[string]int{}
	limit := map[string]uint64{}
	count := func(t *shoalpb.Task, nodeID string) {
		if held[nodeID] == nil {
			held[nodeID], perNode[nodeID] = map[hostPort]int{}, map[string]int{}
		}
		r := compile(t.ServiceId, t.Spec)
		for _, p := range r.ports {
			held[nodeID][p]++
		}
		perNode[nodeID][t.ServiceId]++
		limit[t.ServiceId] = r.maxPerNode
	}
	for _, t := range c.Tasks {
		if m[t.GetNodeId()] != nil && HoldsResources(t) && !skip[t.Id] {
			count(t, t.NodeId)
		}
	}
	for i, d := range ds {
		if d.NodeID != "" {
			count(tasks[i], d.NodeID)
		}
	}
	for id, ports := range held {
		for p, n := range ports {
			if n > 1 {
				return fmt.Errorf("node %s: host port %s held %d times", id, p, n)
			}
		}
		for svc, n := range perNode[id] {
			if limit[svc] > 0 && uint64(n) > limit[svc] {
				return fmt.Errorf("node %s: %d tasks of %s, max %d", id, n, svc, limit[svc])
			}
		}
	}
	// An explained task fits nowhere even now, and its explanation counts
	// each node it could have used exactly once.
	for i, d := range ds {
		t := tasks[i]
		if d.NodeID != "" {
			continue
		}
		if !strings.HasPrefix(d.Explanation, "no suitable node (") || !strings.HasSuffix(d.Explanation, ")") {
			return fmt.Errorf("%s: explanation %q", t.Id, d.Explanation)
		}
		candidates := len(c.Nodes)
		if t.NodeId != "" {
			candidates = 0
			if m[t.NodeId] != nil {
				candidates = 1
			}
		}
		for id, u := range m {
			if (t.NodeId == "" || t.NodeId == id) && u.fits(t) {
				return fmt.Errorf("%s: explained %q, but node %s fits", t.Id, d.Explanation, id)
			}
		}
		if strings.Contains(d.Explanation, "invalid constraint") || candidates == 0 {
			continue
		}
		sum := 0
		for _, match := range nodeCount.FindAllStringSubmatch(d.Explanation, -1) {
			n, _ := strconv.Atoi(match[1])
			sum += n
		}
		if sum != candidates {
			return fmt.Errorf("%s: %q counts %d nodes, want %d", t.Id, d.Explanation, sum, candidates)
		}
	}
	return nil
}

// referencePlace applies the documented rules naively and returns the node of
// each pending task ("" when explained). Groups are services here, since each
// service has one spec.
func referencePlace(c Cluster, pending []*shoalpb.Task) []string {
	var tasks []*shoalpb.Task
	skip := map[string]bool{}
	var services []string
	for _, t := range pending {
		if IsPending(t) {
			tasks = append(tasks, t)
			skip[t.Id] = true
			if !slices.Contains(services, t.ServiceId) {
				services = append(services, t.ServiceId)
			}
		}
	}
	m := newModel(c, skip)
	out := make([]string, len(tasks))
	for _, svc := range services { // tasks with a preset node first
		for i, t := range tasks {
			if t.ServiceId == svc && t.NodeId != "" && m[t.NodeId] != nil && m[t.NodeId].fits(t) {
				m[t.NodeId].add(t)
				out[i] = t.NodeId
			}
		}
	}
	for _, svc := range services {
		for i, t := range tasks {
			if t.ServiceId != svc || t.NodeId != "" {
				continue
			}
			if best := referenceBest(m, t); best != nil {
				best.add(t)
				out[i] = best.node.Id
			}
		}
	}
	return out
}

func referenceBest(m model, t *shoalpb.Task) *usage {
	var eligible []*usage // static filters: the nodes spread counts over
	for _, u := range m {
		if u.staticFits(t) {
			eligible = append(eligible, u)
		}
	}
	for _, p := range t.Spec.Placement.Preferences {
		key, _ := canonicalKey(p.Spread)
		counts, fitting := map[string]int{}, map[string]bool{}
		for _, u := range eligible {
			v := attribute(u.node, key)
			counts[v] += u.svc[t.ServiceId]
			fitting[v] = fitting[v] || u.dynamicFits(t)
		}
		best, found := "", false
		for v, n := range counts {
			if fitting[v] && (!found || n < counts[best] || n == counts[best] && v < best) {
				best, found = v, true
			}
		}
		if !found {
			return nil
		}
		eligible = slices.DeleteFunc(eligible, func(u *usage) bool { return attribute(u.node, key) != best })
	}
	var best *usage
	for _, u := range eligible {
		if !u.dynamicFits(t) {
			continue
		}
		if best == nil || u.svc[t.ServiceId] < best.svc[t.ServiceId] ||
			u.svc[t.ServiceId] == best.svc[t.ServiceId] && (u.total < best.total || u.total == best.total && u.node.Id < best.node.Id) {
			best = u
		}
	}
	return best
}
