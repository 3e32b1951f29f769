package scheduler

import (
	"slices"
	"strconv"
	"strings"
)

// noSuitableNode starts every explanation.
const noSuitableNode = "no suitable node "

// tally counts the nodes each filter rejected, each node under the first
// filter that rejected it.
type tally struct {
	notReady, notActive int
	constraint          map[int]int // by constraint index
	cpu, memory         int
	port                map[int]int // by port index
	maxPerNode          int
}

func (t *tally) add(rj reject) {
	switch rj.kind {
	case rejectNotReady:
		t.notReady++
	case rejectNotActive:
		t.notActive++
	case rejectConstraint:
		if t.constraint == nil {
			t.constraint = make(map[int]int)
		}
		t.constraint[rj.index]++
	case rejectCPU:
		t.cpu++
	case rejectMemory:
		t.memory++
	case rejectPort:
		if t.port == nil {
			t.port = make(map[int]int)
		}
		t.port[rj.index]++
	case rejectMaxPerNode:
		t.maxPerNode++
	}
}

// explain runs the whole pipeline for r on every node and says why they
// reject it. s.svc must be loaded for r.
func (s *state) explain(r *requirements) string {
	var t tally
	for i := range s.nodes {
		t.add(s.firstReject(int32(i), r))
	}
	return t.explain(r)
}

// explain formats the tally: "no suitable node (insufficient memory on 3
// nodes; constraint node.labels.zone==eu not met on 2 nodes)". Reasons come
// by number of nodes, most first, then in pipeline order (as Docker Swarm
// does), so the main obstacle reads first.
func (t *tally) explain(r *requirements) string {
	type reason struct {
		nodes int
		text  string
	}
	var reasons []reason
	add := func(n int, text string) {
		if n > 0 {
			reasons = append(reasons, reason{n, text})
		}
	}
	add(t.notReady, nodes(t.notReady)+" not ready")
	add(t.notActive, nodes(t.notActive)+" not active (pause or drain)")
	for i, c := range r.constraints {
		n := t.constraint[i]
		add(n, "constraint "+c.String()+" not met on "+nodes(n))
	}
	add(t.cpu, "insufficient cpu on "+nodes(t.cpu))
	add(t.memory, "insufficient memory on "+nodes(t.memory))
	for i, p := range r.ports {
		n := t.port[i]
		add(n, "host port "+p.String()+" in use on "+nodes(n))
	}
	add(t.maxPerNode, "max replicas per node ("+strconv.FormatUint(r.maxPerNode, 10)+") reached on "+nodes(t.maxPerNode))
	if len(reasons) == 0 {
		// Unreachable: explain is only called when every node rejects.
		return strings.TrimSpace(noSuitableNode)
	}
	slices.SortStableFunc(reasons, func(a, b reason) int { return b.nodes - a.nodes })
	var sb strings.Builder
	sb.WriteString(noSuitableNode + "(")
	for i, rs := range reasons {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(rs.text)
	}
	sb.WriteString(")")
	return sb.String()
}

// invalidExplanation explains a task whose spec has a constraint that does
// not parse.
func invalidExplanation(r *requirements) string {
	return noSuitableNode + "(" + r.invalid.Error() + ")"
}

// nodes returns "1 node" or "N nodes".
func nodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return strconv.Itoa(n) + " nodes"
}
