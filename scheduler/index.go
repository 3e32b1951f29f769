package scheduler

import (
	"slices"
	"strings"
)

// Indexes over the nodes, built at most once per PlaceTasks call and shared by
// the groups that need them, so a group pays for the nodes it can use rather
// than for reading every node's attributes again.

// eligibleNodes returns the nodes that pass the static filters for r (ready,
// active, r's constraints), in node order. Groups with the same constraints
// share the slice; callers must not modify it.
func (s *state) eligibleNodes(r *requirements) []int32 {
	if list, ok := s.eligible[r.constraintKey]; ok {
		return list
	}
	var list []int32
	for i := range s.nodes {
		n := &s.nodes[i]
		if n.availability.kind == passed && constraintReject(n.pb, r).kind == passed {
			list = append(list, int32(i))
		}
	}
	if s.eligible == nil {
		s.eligible = make(map[string][]int32)
	}
	s.eligible[r.constraintKey] = list
	return list
}

// spreadValues numbers the values of one node attribute: value[bucket[ni]] is
// the attribute of node ni, and values are sorted, so comparing buckets
// compares values.
type spreadValues struct {
	values []string
	bucket []int32
}

// spreadOf returns the numbered values of the canonical attribute key.
func (s *state) spreadOf(key string) *spreadValues {
	if sv, ok := s.spreads[key]; ok {
		return sv
	}
	raw := make([]string, len(s.nodes))
	for i := range s.nodes {
		raw[i] = attribute(s.nodes[i].pb, key)
	}
	values := slices.Clone(raw)
	slices.Sort(values)
	values = slices.Compact(values)
	sv := &spreadValues{values: values, bucket: make([]int32, len(s.nodes))}
	for i, v := range raw {
		b, _ := slices.BinarySearchFunc(values, v, strings.Compare)
		sv.bucket[i] = int32(b)
	}
	if s.spreads == nil {
		s.spreads = make(map[string]*spreadValues)
	}
	s.spreads[key] = sv
	return sv
}
