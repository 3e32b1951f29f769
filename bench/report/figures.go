package main

import (
	"fmt"
	"slices"
	"strings"
)

// figure is one number docs/benchmarks.md reports: a metric of one
// benchmark, summarised over its runs and checked against a target.
type figure struct {
	Title string
	Bench string // benchmark name without -GOMAXPROCS
	Unit  string // metric unit as the benchmark reports it
	// What says what the number measures.
	What string
	// Target is nil for figures reported without one.
	Target *target
	// Peer compares with other systems; these are published figures, not
	// measured in this run.
	Peer string
	// Limit explains a missed target from the measured data; called only
	// when the target is not met.
	Limit func(d *data) string
	// Observe, if set, adds what the run's other metrics show.
	Observe func(d *data) string
}

// target is a bound on the median.
type target struct {
	AtMost bool // true: median <= Value; false: median >= Value
	Value  float64
}

func (t *target) met(median float64) bool {
	if t.AtMost {
		return median <= t.Value
	}
	return median >= t.Value
}

func (t *target) String() string {
	if t.AtMost {
		return "≤ " + fmtNum(t.Value)
	}
	return "≥ " + fmtNum(t.Value)
}

// figures lists what the report shows, in order.
var figures = []figure{
	{
		Title:  "Leader failover",
		Bench:  "BenchmarkLeaderFailover/managers=3",
		Unit:   "ms/failover",
		What:   "3 managers; kill -9 the leader, then UpdateNode (a label change, as `shoal node update --label-add`) through another manager's local socket every 10 ms; time from the SIGKILL to the first successful write. The killed manager is restarted and the cluster is healthy again before the next sample.",
		Target: &target{AtMost: true, Value: 2000},
		Peer:   "Docker Swarm: about 10 s to elect a new leader with its default Raft settings (Swarm's documented/observed figure, not measured here; a side-by-side Swarm run comes in a later issue).",
		Limit: func(d *data) string {
			return "The Raft election timeout (500 ms) plus the leader lease and the first commit bound it; " +
				"look at the samples in the raw output (`--- BENCH` lines) for outliers caused by other load on the machine."
		},
	},
	{
		Title:  "Committed writes/s, 64 clients on the leader",
		Bench:  "BenchmarkControlWrites/clients=64/via=leader",
		Unit:   "writes/s",
		What:   "3 managers; 64 Go gRPC clients on the leader's unix socket, each with its own connection and label key, calling ControlService.UpdateNode in a loop for 3 s; client i writes node object i%3. Only successful (committed) writes count.",
		Target: &target{AtMost: false, Value: 20000},
		Peer:   "etcd publishes about 44,000 writes/s on 8 vCPUs; Consul about 3,800/s (published figures, not measured here).",
		Limit:  writesLimit("BenchmarkControlWrites/clients=64/via=leader"),
	},
	{
		Title:  "Committed writes/s, 64 clients spread over all managers",
		Bench:  "BenchmarkControlWrites/clients=64/via=all",
		Unit:   "writes/s",
		What:   "As above, but client i talks to manager i%3: two thirds of the writes go to a follower, which forwards them to the leader.",
		Target: &target{AtMost: false, Value: 20000},
		Peer:   "etcd publishes about 44,000 writes/s on 8 vCPUs; Consul about 3,800/s (published figures, not measured here).",
		Limit:  writesLimit("BenchmarkControlWrites/clients=64/via=all"),
	},
	{
		Title: "Committed writes/s, 1 client on the leader",
		Bench: "BenchmarkControlWrites/clients=1/via=leader",
		Unit:  "writes/s",
		What:  "One client, one request at a time, on the leader's socket: the inverse of the write latency.",
	},
	{
		Title: "Committed writes/s, 1 client alternating over all managers",
		Bench: "BenchmarkControlWrites/clients=1/via=all",
		Unit:  "writes/s",
		What:  "One client whose successive requests go to manager 1, 2, 3, 1, …: two thirds are forwarded by a follower.",
		Observe: func(d *data) string {
			const bench = "BenchmarkControlWrites/clients=1/via=all"
			writes, entries := d.median(bench, "writes/s"), d.median(bench, "entries/s")
			if writes == 0 || entries <= writes*1.05 {
				return ""
			}
			return fmt.Sprintf("The leader's log grew by %s entries/s for %s writes/s although a single client cannot race with itself: "+
				"a follower reads the node from its own replica, which has not yet applied the write the client just made through another manager, "+
				"so its proposal carries a stale version, is refused after going through Raft, and is retried. "+
				"Median latency %s ms against %s ms on the leader alone.",
				fmtNum(entries), fmtNum(writes), fmtNum(d.median(bench, "p50-ms")), fmtNum(d.median("BenchmarkControlWrites/clients=1/via=leader", "p50-ms")))
		},
	},
	{
		Title:  "Node failure detection",
		Bench:  "BenchmarkNodeFailureDetection/worker",
		Unit:   "ms/detect",
		What:   "1 manager + 1 worker; kill -9 the worker, then ListNodes (what `shoal node ls` sends) on the manager every 10 ms; time from the SIGKILL until the worker is listed `down`. The worker is restarted and ready again before the next sample.",
		Target: &target{AtMost: true, Value: 3000},
		Peer:   "Docker Swarm: about 15 s (its documented/observed figure, not measured here).",
		Limit: func(d *data) string {
			return "A node is marked down when gossip declares it dead or its session ends and it does not return within one heartbeat period (1 s by default); both bound this figure."
		},
	},
	{
		Title: "Idle manager resident memory",
		Bench: "BenchmarkIdleMemory/managers=1/workers=1",
		Unit:  "MiB-manager",
		What:  "VmRSS of the manager of an idle 1-manager + 1-worker cluster, run N sampled N×10 s after the cluster became healthy.",
	},
	{
		Title: "Idle worker resident memory",
		Bench: "BenchmarkIdleMemory/managers=1/workers=1",
		Unit:  "MiB-worker",
		What:  "VmRSS of the worker of the same cluster.",
	},
	{
		Title: "In-process micro benchmark: store writes/s, 3 managers, 64 clients",
		Bench: "BenchmarkStorePropose/managers=3/clients=64",
		Unit:  "writes/s",
		What:  "IN-PROCESS, not user-visible: three manager/state stores in the test process, Raft over plain TCP on 127.0.0.1, raft-boltdb with fsync; each client updates its own object (no conflicts); no gRPC, TLS or control API. The ceiling the control API could reach on this machine.",
	},
	{
		Title: "In-process micro benchmark: store writes/s, 3 managers, 1 client",
		Bench: "BenchmarkStorePropose/managers=3/clients=1",
		Unit:  "writes/s",
		What:  "As above with one client: the inverse of the Raft commit latency with three managers.",
	},
	{
		Title: "In-process micro benchmark: store writes/s, 1 manager, 64 clients",
		Bench: "BenchmarkStorePropose/managers=1/clients=64",
		Unit:  "writes/s",
		What:  "As above with a single manager: no replication, only the local log fsync.",
	},
}

// writesLimit explains a missed write-throughput target with the run's own
// numbers: how much of the Raft log went to refused conflicting writes, and
// what the store commits without conflicts.
func writesLimit(bench string) func(d *data) string {
	return func(d *data) string {
		var b strings.Builder
		writes, entries, aborted := d.median(bench, "writes/s"), d.median(bench, "entries/s"), d.median(bench, "aborted/s")
		if writes > 0 && entries > 0 {
			fmt.Fprintf(&b, "Conflicts, first: the leader's Raft log grew by %s entries/s but only %s/s were successful writes (%.0f%% of the proposals were refused), "+
				"and %s requests/s gave up with Aborted. UpdateNode reads the node, changes it and proposes the whole object with the version it read; "+
				"with 64 clients on 3 node objects almost every proposal loses the race, still goes through Raft (logged and fsynced on every manager), "+
				"is refused by the FSM, and is retried up to 5 times. At most one update per node object commits per Raft round trip. ",
				fmtNum(entries), fmtNum(writes), 100*(1-writes/entries), fmtNum(aborted))
		}
		if ceiling := d.median("BenchmarkStorePropose/managers=3/clients=64", "writes/s"); ceiling > 0 {
			fmt.Fprintf(&b, "Then the log itself: without conflicts, gRPC or TLS, the in-process store with 3 managers commits %s writes/s at 64 clients on this machine "+
				"(%s with 1 manager), because each commit waits for the leader's raft-boltdb write (a bbolt transaction: 2 fdatasync per batch) and then a follower's, "+
				"all three managers sharing one disk and 2 vCPUs; 64 clients keep batches small, so throughput is about 64 / commit latency.",
				fmtNum(ceiling), fmtNum(d.median("BenchmarkStorePropose/managers=1/clients=64", "writes/s")))
		}
		return b.String()
	}
}

// data is every result of a report, by benchmark and unit.
type data struct {
	values map[string]map[string][]float64 // bench -> unit -> per-run values
	group  map[string]*group               // bench -> the group that ran it
}

func newData(groups []*group) *data {
	d := &data{values: map[string]map[string][]float64{}, group: map[string]*group{}}
	for _, g := range groups {
		for _, r := range g.Results {
			if d.values[r.Name] == nil {
				d.values[r.Name] = map[string][]float64{}
			}
			for unit, v := range r.Metrics {
				d.values[r.Name][unit] = append(d.values[r.Name][unit], v)
			}
			d.group[r.Name] = g
		}
	}
	return d
}

// summary is a metric's runs: how many, median, min and max.
type summary struct {
	N                int
	Median, Min, Max float64
}

func (d *data) summary(bench, unit string) (summary, bool) {
	vals := d.values[bench][unit]
	if len(vals) == 0 {
		return summary{}, false
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{N: len(s), Median: med, Min: s[0], Max: s[len(s)-1]}, true
}

func (d *data) median(bench, unit string) float64 {
	s, _ := d.summary(bench, unit)
	return s.Median
}

// fmtNum prints a value with precision fitting its size: 1,234 / 12.3 / 1.23.
func fmtNum(v float64) string {
	switch a := abs(v); {
	case a >= 1000:
		s := fmt.Sprintf("%.0f", v)
		return groupThousands(s)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
