package scheduler

import "slices"

// Scoring, lower is better:
//
//  1. for each spread preference in order, the branch (nodes sharing a value
//     of the attribute; a missing label is the value "") whose nodes hold the
//     fewest tasks of the service, ties to the smaller value — so the branches
//     are balanced before anything else, as in Docker Swarm;
//  2. fewest tasks of the service on the node;
//  3. fewest tasks in all on the node;
//  4. node ID.
//
// A group's candidate nodes form a tree with one level per preference; each
// inner branch keeps its children in a min-heap by (tasks of the service,
// value), each leaf its nodes in a min-heap by the node keys. The best node is
// found by descending through heap roots, and every change — a placement, a
// node that no longer fits — touches only roots, so it costs a sift per level:
// O((depth+1)·log nodes).

// nodeEntry is a candidate node in a leaf heap, with its keys copied in so
// comparisons stay in the heap's memory.
type nodeEntry struct {
	svc   int32 // tasks of the service on the node
	total int32 // tasks on the node
	rank  int32 // node ID order
	ni    int32 // index in state.nodes
}

func (a *nodeEntry) less(b *nodeEntry) bool {
	if a.svc != b.svc {
		return a.svc < b.svc
	}
	if a.total != b.total {
		return a.total < b.total
	}
	return a.rank < b.rank
}

// branch is a set of candidate nodes sharing the values of the preferences
// above it.
type branch struct {
	// count is the tasks of the service on all the branch's candidate nodes,
	// including the ones removed from the heaps for not fitting: they still
	// hold their tasks, and Docker Swarm balances those too.
	count    int64
	rank     int32     // order of the branch's value among its siblings
	leaf     bool      // nodes is the heap, not children
	children []*branch // min-heap by (count, rank)
	nodes    []nodeEntry
}

func (a *branch) less(b *branch) bool {
	if a.count != b.count {
		return a.count < b.count
	}
	return a.rank < b.rank
}

// tree holds a group's candidates; path is the branches from the root to the
// leaf of the last node next returned.
type tree struct {
	root *branch
	path []*branch
}

// buildTree gathers the nodes passing the static filters for r into a tree
// over r's spread preferences. s.svc must be loaded for r.
func (s *state) buildTree(r *requirements) *tree {
	// The candidates live in s.candidates, reused from group to group: a
	// group's tree is dead once the group is placed.
	eligible := s.eligibleNodes(r)
	entries := slices.Grow(s.candidates[:0], len(eligible))
	for _, ni := range eligible {
		n := &s.nodes[ni]
		entries = append(entries, nodeEntry{svc: s.svc[ni], total: n.total, rank: n.rank, ni: ni})
	}
	s.candidates = entries
	return &tree{root: s.newBranch(entries, r.spread), path: make([]*branch, 0, len(r.spread)+1)}
}

// newBranch splits entries by the value of spread[0], recursively. It
// reorders entries, and its heaps share their memory.
func (s *state) newBranch(entries []nodeEntry, spread []string) *branch {
	b := &branch{}
	for i := range entries {
		b.count += int64(entries[i].svc)
	}
	if len(spread) == 0 {
		b.leaf = true
		b.nodes = entries
		for i := len(entries)/2 - 1; i >= 0; i-- {
			siftNodes(entries, i)
		}
		return b
	}
	// Counting sort by value, stable so node order is kept within a value.
	sv := s.spreadOf(spread[0])
	start := make([]int, len(sv.values)+1)
	for i := range entries {
		start[sv.bucket[entries[i].ni]+1]++
	}
	for v := 1; v < len(start); v++ {
		start[v] += start[v-1]
	}
	// s.sorted is free again once copied back, before the recursion.
	s.sorted = slices.Grow(s.sorted[:0], len(entries))[:len(entries)]
	next := slices.Clone(start)
	for _, e := range entries {
		v := sv.bucket[e.ni]
		s.sorted[next[v]] = e
		next[v]++
	}
	copy(entries, s.sorted)
	for v := range sv.values {
		if start[v] == start[v+1] {
			continue
		}
		c := s.newBranch(entries[start[v]:start[v+1]:start[v+1]], spread[1:])
		c.rank = int32(v)
		b.children = append(b.children, c)
	}
	for i := len(b.children)/2 - 1; i >= 0; i-- {
		siftBranches(b.children, i)
	}
	return b
}

// next returns the best candidate for which fits holds, dropping the
// candidates it tries that do not fit (they never will again in this call),
// or false when none is left. It leaves the route to the node in t.path.
func (t *tree) next(fits func(ni int32) bool) (int32, bool) {
	for {
		t.path = t.path[:0]
		b := t.root
		for !b.leaf {
			if len(b.children) == 0 { // only the root: empty branches are pruned
				return -1, false
			}
			t.path = append(t.path, b)
			b = b.children[0]
		}
		for len(b.nodes) > 0 {
			if ni := b.nodes[0].ni; fits(ni) {
				t.path = append(t.path, b)
				return ni, true
			}
			b.nodes = popNode(b.nodes)
		}
		if len(t.path) == 0 { // the root is an exhausted leaf
			return -1, false
		}
		// Prune the exhausted leaf, and each ancestor it leaves empty.
		for i := len(t.path) - 1; i >= 0; i-- {
			p := t.path[i]
			p.children = popBranch(p.children)
			if len(p.children) > 0 {
				break
			}
		}
	}
}

// placed records a placement on the node next just returned: one more task of
// the service on it and on each branch above it, re-sorting each heap.
func (t *tree) placed() {
	leaf := t.path[len(t.path)-1]
	leaf.nodes[0].svc++
	leaf.nodes[0].total++
	siftNodes(leaf.nodes, 0)
	for i, b := range t.path {
		b.count++
		if i > 0 {
			siftBranches(t.path[i-1].children, 0)
		}
	}
}

// The heaps are written out for their two element types so comparisons are
// direct calls; container/heap would go through an interface.

func siftNodes(h []nodeEntry, i int) {
	for {
		m, l := i, 2*i+1
		if l < len(h) && h[l].less(&h[m]) {
			m = l
		}
		if r := l + 1; r < len(h) && h[r].less(&h[m]) {
			m = r
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func popNode(h []nodeEntry) []nodeEntry {
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	siftNodes(h, 0)
	return h
}

func siftBranches(h []*branch, i int) {
	for {
		m, l := i, 2*i+1
		if l < len(h) && h[l].less(h[m]) {
			m = l
		}
		if r := l + 1; r < len(h) && h[r].less(h[m]) {
			m = r
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func popBranch(h []*branch) []*branch {
	last := len(h) - 1
	h[0] = h[last]
	h[last] = nil
	h = h[:last]
	siftBranches(h, 0)
	return h
}
