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
		Title:  "Committed writes/s, 64 clients each on its own object, on the leader",
		Bench:  "BenchmarkControlWrites/object=own/clients=64/via=leader",
		Unit:   "writes/s",
		What:   "3 managers; 64 Go gRPC clients on the leader's unix socket, each with its own connection, calling ControlService.UpdateService in a loop for 3 s to change a label of its own service (64 services with 0 replicas, as `shoal service update --label-add`): no two clients write the same object. Only successful (committed) writes count.",
		Target: &target{AtMost: false, Value: 20000},
		Peer:   "etcd publishes about 44,000 writes/s on 8 vCPUs; Consul about 3,800/s (published figures, not measured here).",
		Limit:  writesLimit("BenchmarkControlWrites/object=own/clients=64/via=leader"),
	},
	{
		Title:  "Committed writes/s, 64 clients each on its own object, spread over all managers",
		Bench:  "BenchmarkControlWrites/object=own/clients=64/via=all",
		Unit:   "writes/s",
		What:   "As above, but client i talks to manager i%3: two thirds of the writes go to a follower, which asks the leader for its read index, forwards the write and waits until its own replica applied it.",
		Target: &target{AtMost: false, Value: 20000},
		Peer:   "etcd publishes about 44,000 writes/s on 8 vCPUs; Consul about 3,800/s (published figures, not measured here).",
		Limit:  writesLimit("BenchmarkControlWrites/object=own/clients=64/via=all"),
	},
	{
		Title:   "Committed writes/s, 64 clients on 3 shared objects, on the leader (contended)",
		Bench:   "BenchmarkControlWrites/object=shared/clients=64/via=leader",
		Unit:    "writes/s",
		What:    "3 managers; 64 clients on the leader's socket calling ControlService.UpdateNode, each with its own label key, client i on node object (i/3)%3: about 21 clients race for each object.",
		Observe: contendedWrites("BenchmarkControlWrites/object=shared/clients=64/via=leader"),
	},
	{
		Title:   "Committed writes/s, 64 clients on 3 shared objects, spread over all managers (contended)",
		Bench:   "BenchmarkControlWrites/object=shared/clients=64/via=all",
		Unit:    "writes/s",
		What:    "As above, but client i talks to manager i%3, so the clients of one object race through all three managers.",
		Observe: contendedWrites("BenchmarkControlWrites/object=shared/clients=64/via=all"),
	},
	{
		Title: "Committed writes/s, 1 client on the leader",
		Bench: "BenchmarkControlWrites/object=own/clients=1/via=leader",
		Unit:  "writes/s",
		What:  "One client, one UpdateService at a time, on the leader's socket: the inverse of the write latency.",
	},
	{
		Title: "Committed writes/s, 1 client alternating over all managers",
		Bench: "BenchmarkControlWrites/object=own/clients=1/via=all",
		Unit:  "writes/s",
		What:  "One client whose successive UpdateService requests go to manager 1, 2, 3, 1, …: two thirds go through a follower, which must first catch up with the write the client just made through another manager.",
		Observe: func(d *data) string {
			const bench = "BenchmarkControlWrites/object=own/clients=1/via=all"
			writes, entries := d.median(bench, "writes/s"), d.median(bench, "entries/s")
			if writes == 0 {
				return ""
			}
			return fmt.Sprintf("The leader's log grew by %s entries/s for %s writes/s (a refused proposal would add an entry). "+
				"Median latency %s ms against %s ms on the leader alone: a follower asks the leader for its read index, waits until its replica applied it, "+
				"forwards the write, then waits until its replica applied that too; a follower learns that an entry committed from the leader's next AppendEntries, "+
				"sent at the latest after the 5 ms Raft commit timeout when nothing else is written.",
				fmtNum(entries), fmtNum(writes), fmtNum(d.median(bench, "p50-ms")), fmtNum(d.median("BenchmarkControlWrites/object=own/clients=1/via=leader", "p50-ms")))
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
// numbers: the clients wait for each write, so the commit latency bounds the
// rate, and the in-process store shows what Raft alone commits here.
func writesLimit(bench string) func(d *data) string {
	return func(d *data) string {
		var b strings.Builder
		writes, p50 := d.median(bench, "writes/s"), d.median(bench, "p50-ms")
		if writes > 0 && p50 > 0 {
			fmt.Fprintf(&b, "Latency, not conflicts: no two clients write the same object, and each client waits for its write before sending the next, "+
				"so 64 clients make at most 64 / latency writes/s; the median latency was %s ms (64 / %s ms = %s/s). "+
				"Raft already shares the log writes of concurrent proposals (one raft-boltdb transaction, one fsync pair, per batch of up to 256 entries), "+
				"so reaching 20,000/s with 64 clients needs a write to commit in 3.2 ms. ",
				fmtNum(p50), fmtNum(p50), fmtNum(64/p50*1000))
		}
		if ceiling := d.median("BenchmarkStorePropose/managers=3/clients=64", "writes/s"); ceiling > 0 {
			fmt.Fprintf(&b, "Without gRPC, TLS, the control API or separate processes, the in-process store with 3 managers commits %s writes/s at 64 clients on this machine "+
				"(%s with 1 manager): a commit waits for the leader's raft-boltdb transaction (2 fdatasync) and then a follower's, "+
				"all three managers sharing one disk and 2 vCPUs with the clients. ",
				fmtNum(ceiling), fmtNum(d.median("BenchmarkStorePropose/managers=1/clients=64", "writes/s")))
		}
		if cpu := d.median(bench, "cpu-ms/write"); cpu > 0 {
			fmt.Fprintf(&b, "CPU rules it out as well: the three manager processes used %s ms of CPU per committed write (gRPC and TLS, the Raft log and replication, "+
				"the FSM on every manager, reading and copying the object), so 20,000 writes/s would need %s CPUs for the managers alone, on a machine with 2 "+
				"that the clients share.", fmtNum(cpu), fmtNum(20000*cpu/1000))
		}
		return b.String()
	}
}

// contendedWrites says how much of the log went to refused conflicting
// writes when clients race for a few objects, and what the queueing costs in
// latency.
func contendedWrites(bench string) func(d *data) string {
	return func(d *data) string {
		writes, entries, aborted := d.median(bench, "writes/s"), d.median(bench, "entries/s"), d.median(bench, "aborted/s")
		if writes == 0 || entries == 0 {
			return ""
		}
		text := fmt.Sprintf("Updates of one object through one manager queue behind each other (only one of them is in Raft at a time), "+
			"so each object takes about one write per commit round; races between managers remain. "+
			"The leader's log grew by %s entries/s for %s writes/s (%.0f%% of the proposals were refused with a version conflict and retried), "+
			"and %s requests/s gave up with Aborted after losing for 10 s. Latency: median %s ms, p99 %s ms.",
			fmtNum(entries), fmtNum(writes), 100*max(0, 1-writes/entries), fmtNum(aborted),
			fmtNum(d.median(bench, "p50-ms")), fmtNum(d.median(bench, "p99-ms")))
		if strings.HasSuffix(bench, "/via=all") {
			text += " A follower's update loses most races against the stream of updates of the same object through the leader, " +
				"whose writers read and propose without a network round trip: the p99 is a follower's wait for a gap in that stream."
		}
		return text
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
