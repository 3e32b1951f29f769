package scheduler

import (
	"strconv"
	"strings"

	shoalpb "shoal/proto"
)

// requirements is what a task asks of a node, compiled once per group of
// tasks that the scheduler cannot tell apart (same service, same
// scheduling-relevant spec fields).
type requirements struct {
	serviceID   string
	constraints []Constraint
	// constraintKey is equal for requirements with the same constraints.
	constraintKey string
	// invalid is the first constraint that does not parse; such a task fits
	// nowhere (the API edge should have refused it).
	invalid    error
	cpu, mem   int64
	ports      []hostPort
	maxPerNode uint64
	// spread holds the canonical keys of the spread preferences, in order.
	spread []string
}

// hostPort is a host-mode published port, which only one task per node may hold.
type hostPort struct {
	port     uint32
	protocol string
}

func (p hostPort) String() string {
	return strconv.FormatUint(uint64(p.port), 10) + "/" + p.protocol
}

// compile extracts the requirements of a task of service serviceID with spec.
func compile(serviceID string, spec *shoalpb.TaskSpec) requirements {
	r := requirements{serviceID: serviceID}
	res := spec.GetResources().GetReservations()
	r.cpu = max(res.GetNanoCpus(), 0)
	r.mem = max(res.GetMemoryBytes(), 0)
	pl := spec.GetPlacement()
	r.maxPerNode = pl.GetMaxReplicasPerNode()
	for _, s := range pl.GetConstraints() {
		c, err := ParseConstraint(s)
		if err != nil {
			if r.invalid == nil {
				r.invalid = err
			}
			continue
		}
		r.constraints = append(r.constraints, c)
		r.constraintKey += strconv.Itoa(len(c.String())) + ":" + c.String()
	}
	for _, p := range pl.GetPreferences() {
		if key, err := canonicalKey(strings.TrimSpace(p.GetSpread())); err == nil {
			r.spread = append(r.spread, key)
		}
	}
	for _, p := range spec.GetPorts() {
		if hp, ok := hostPortOf(p); ok {
			r.ports = append(r.ports, hp)
		}
	}
	return r
}

// hostPortOf returns the host port p holds, if it holds one: host mode with a
// published port (0 means "any port", which never conflicts). The protocol
// defaults to tcp.
func hostPortOf(p *shoalpb.PortConfig) (hostPort, bool) {
	if p.GetMode() != shoalpb.PublishMode_PUBLISH_MODE_HOST || p.GetPublishedPort() == 0 {
		return hostPort{}, false
	}
	proto := strings.ToLower(p.GetProtocol())
	if proto == "" {
		proto = "tcp"
	}
	return hostPort{port: p.GetPublishedPort(), protocol: proto}, true
}

// rejectKind names the filter that rejected a node, in pipeline order.
type rejectKind uint8

const (
	passed rejectKind = iota
	rejectNotReady
	rejectNotActive
	rejectConstraint // index: the constraint
	rejectCPU
	rejectMemory
	rejectPort // index: the port
	rejectMaxPerNode
)

// reject is the verdict of the pipeline on one node: the first filter that
// rejected it, and which constraint or port when that filter has several.
type reject struct {
	kind  rejectKind
	index int
}

// staticReject runs the filters that do not depend on what runs on the node:
// ready, active, constraints. They cannot change during a PlaceTasks call.
func staticReject(n *shoalpb.Node, r *requirements) reject {
	if rj := availabilityReject(n); rj.kind != passed {
		return rj
	}
	return constraintReject(n, r)
}

// availabilityReject runs the first two filters, which are the same for every
// task: node ready, availability active.
func availabilityReject(n *shoalpb.Node) reject {
	if n.GetStatus().GetState() != shoalpb.NodeState_NODE_STATE_READY {
		return reject{kind: rejectNotReady}
	}
	if n.GetSpec().GetAvailability() != shoalpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE {
		return reject{kind: rejectNotActive}
	}
	return reject{}
}

func constraintReject(n *shoalpb.Node, r *requirements) reject {
	for i, c := range r.constraints {
		if !c.Match(n) {
			return reject{kind: rejectConstraint, index: i}
		}
	}
	return reject{}
}

// dynamicReject runs the filters that depend on the tasks on node ni:
// resources, host ports, max replicas per node. The service counts in s.svc
// must be loaded for r.serviceID. Placements only consume, so once a node is
// rejected here for r it stays rejected for the rest of the call.
func (s *state) dynamicReject(ni int32, r *requirements) reject {
	n := &s.nodes[ni]
	if r.cpu > 0 && r.cpu > n.cpuFree {
		return reject{kind: rejectCPU}
	}
	if r.mem > 0 && r.mem > n.memFree {
		return reject{kind: rejectMemory}
	}
	if n.ports != nil {
		for i, p := range r.ports {
			if _, used := n.ports[p]; used {
				return reject{kind: rejectPort, index: i}
			}
		}
	}
	if r.maxPerNode > 0 && uint64(s.svc[ni]) >= r.maxPerNode {
		return reject{kind: rejectMaxPerNode}
	}
	return reject{}
}

// firstReject runs the whole pipeline on node ni.
func (s *state) firstReject(ni int32, r *requirements) reject {
	n := &s.nodes[ni]
	if n.availability.kind != passed {
		return n.availability
	}
	if rj := constraintReject(n.pb, r); rj.kind != passed {
		return rj
	}
	return s.dynamicReject(ni, r)
}

// Eligible reports whether node n passes the filters that do not depend on
// the node's tasks — ready, availability active, the constraints of spec —
// so the global orchestrator can decide which nodes get a task. Resources,
// ports and max replicas are left to PlaceTasks, which explains a task that
// does not fit its node. A spec with a constraint that does not parse is
// eligible nowhere; a nil node is not eligible.
func Eligible(n *shoalpb.Node, spec *shoalpb.TaskSpec) bool {
	if n == nil {
		return false
	}
	r := requirements{}
	for _, s := range spec.GetPlacement().GetConstraints() {
		c, err := ParseConstraint(s)
		if err != nil {
			return false
		}
		r.constraints = append(r.constraints, c)
	}
	return staticReject(n, &r).kind == passed
}
