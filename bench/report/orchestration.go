package main

import (
	"fmt"
	"slices"
)

// allFigures is every figure of the report, in order: the cluster core's
// (figures), then those of services and scheduling, of containers, and of
// service networking (DNS, endpoint propagation, routing mesh), and of
// releases (rolling updates).
var allFigures = slices.Concat(figures, orchestrationFigures, containerFigures, dnsFigures, endpointsFigures, meshFigures, rolloutFigures, swarmFigures)

// Benchmarks of services and scheduling.
const (
	nodeDeathBench  = "BenchmarkNodeDeath/workers=3"
	scaleBench      = "BenchmarkControlPlaneScale/workers=1000/tasks=100000"
	scaleBenchQuick = "BenchmarkControlPlaneScale/workers=1000/tasks=10000"
)

// scaleWhat describes BenchmarkControlPlaneScale for n tasks.
func scaleWhat(n string) string {
	return "3 managers (real processes) and 1,000 simulated workers in the benchmark process: each joined with the worker token " +
		"(its own key and certificate) and runs the real agent (mutual-TLS gRPC session with the leader, heartbeats, assignments, " +
		"batched status reports) and the real executor (a controller per task, and the task's record written when it is assigned, about to start, and running), over a no-op runtime " +
		"whose tasks run as soon as they start; the workers' data dirs are on tmpfs. The cluster's heartbeat period is 60 s: the fleet's agents share one process " +
		"with the task controllers and, while those run, can wait tens of seconds for a CPU (with 1, 5 or 10 s, hundreds of simulated nodes were marked down " +
		"and their tasks replaced). `service create --replicas 0` (constraint node.role==worker), " +
		"then `service scale` to " + n + " tasks; time from the scale request until a follower's ListServices counts them all RUNNING. " +
		"The service is removed, and its tasks gone, before the next run."
}

var orchestrationFigures = []figure{
	{
		Title:  "Node death: tasks running elsewhere",
		Bench:  nodeDeathBench,
		Unit:   "ms/reschedule",
		What:   "3 managers + 3 workers (real processes, process runtime); a service of 6 `sleep` tasks constrained to the workers (2 on each); kill -9 of one worker, then ListTasks on the leader every 10 ms; time from the SIGKILL until 6 tasks of the service are RUNNING on the other workers. The worker is restarted, the cluster healthy and the service removed before the next sample, which kills the next worker.",
		Target: &target{AtMost: true, Value: 5000},
		Peer:   "Docker Swarm: about 15 s to mark a node down, then the 5 s default restart delay (its documented/observed figures, not measured here).",
		Limit: func(d *data) string {
			return "The dead node is detected about one heartbeat period (1 s) after its session ends, then the orchestrator holds its tasks for OrphanGrace (2 s), " +
				"so that a restarting agent can re-adopt them, before it replaces them; scheduling and starting the replacements come on top."
		},
	},
	{
		Title:   "Scale-up to 100,000 tasks on 1,000 workers",
		Bench:   scaleBench,
		Unit:    "s/converge",
		What:    scaleWhat("100,000"),
		Target:  &target{AtMost: true, Value: 20},
		Peer:    "Nomad's C1M challenge started 1,000,000 containers on 5,000 hosts at about 3,750 containers/s (HashiCorp's published figure, not measured here). 20 s for 100,000 tasks is 5,000 tasks/s.",
		Limit:   scaleLimit(scaleBench),
		Observe: scaleObserve(scaleBench),
	},
	{
		Title:  "Leader resident memory with 100,000 tasks",
		Bench:  scaleBench,
		Unit:   "MiB-leader",
		What:   "VmRSS of the leader once the 100,000 tasks of the scale-up above are RUNNING. The target is 500 MB, 477 MiB.",
		Target: &target{AtMost: true, Value: 500e6 / (1 << 20)},
		Limit: func(d *data) string {
			split := ""
			if anon := d.median(scaleBench, "MiB-leader-anon"); anon > 0 {
				split = fmt.Sprintf(" (of the resident memory, %s MiB is anonymous, the Go heap and stacks, and %s MiB mapped files such as the Raft log's BoltDB)",
					fmtNum(anon), fmtNum(d.median(scaleBench, "MiB-leader-file")))
			}
			return "The Go heap" + split + ". Heap profiles of the leader at 100,000 running tasks (first and second scale-up of a run, SHOAL_BENCH_PROFILE) show 289 and 361 MB in use: " +
				"go-memdb's three radix-tree indexes of the task table (by ID, service and node: a node, a leaf, two watch channels and a key per entry) " +
				"135 and 195 MB, the task objects (sharing their service's spec) about 65 MB, the orchestrator's working set of a pass over the service " +
				"about 25 MB, gRPC's buffers 7 to 20 MB. " +
				"Go's garbage collector lets the heap grow to twice its live data before it collects (GOGC=100), so the resident size is about twice that. " +
				"Meeting the target needs a leaner task table than go-memdb's indexes, or a memory limit for the collector."
		},
		Observe: func(d *data) string {
			return fmt.Sprintf("Peak resident memory of the leader (VmHWM) by then: %s MiB.", fmtNum(d.median(scaleBench, "MiB-leader-peak")))
		},
	},
	{
		Title:   "Scale-up to 10,000 tasks on 1,000 workers (quick mode)",
		Bench:   scaleBenchQuick,
		Unit:    "s/converge",
		What:    scaleWhat("10,000") + " `bench/run.sh quick` runs this smaller size instead of the 100,000 tasks of the full run.",
		Observe: scaleObserve(scaleBenchQuick),
	},
	{
		Title:  "In-process micro benchmark: scheduler placements/s, 100,000 tasks on 1,000 nodes",
		Bench:  "BenchmarkPlaceTasks/nodes=1000/services=1x100000",
		Unit:   "placements/s",
		What:   "IN-PROCESS: scheduler.PlaceTasks, the pure placement function the orchestrator calls, places 100,000 pending tasks of one service (each reserving CPU and memory) on 1,000 ready nodes that already run 5 tasks each; building its input is not timed.",
		Target: &target{AtMost: false, Value: 100_000},
		Peer:   "Kubernetes' scheduler is held to a throughput threshold of 100 pods/s (its documented scalability threshold, not measured here).",
	},
	{
		Title:  "In-process micro benchmark: scheduler placements/s, 100,000 tasks on 5,000 nodes",
		Bench:  "BenchmarkPlaceTasks/nodes=5000/services=1x100000",
		Unit:   "placements/s",
		What:   "As above on 5,000 nodes. The other shapes (100 services of 1,000 tasks, spread over zones, 10,000 services of 10) are listed under All results.",
		Target: &target{AtMost: false, Value: 100_000},
		Peer:   "Kubernetes' scheduler is held to a throughput threshold of 100 pods/s (its documented scalability threshold, not measured here).",
	},
}

// scaleObserve reports the rate and where the CPU time of a scale-up went.
func scaleObserve(bench string) func(d *data) string {
	return func(d *data) string {
		converge := d.median(bench, "s/converge")
		if converge == 0 {
			return ""
		}
		return fmt.Sprintf("%s tasks/s. The last task started on a worker after %s s. CPU time during the scale-up: leader %s s, both followers %s s, "+
			"the benchmark process (the 1,000 simulated workers) %s s, out of the %s s the 2 CPUs offered.",
			fmtNum(d.median(bench, "tasks/s")), fmtNum(d.median(bench, "s-last-start")), fmtNum(d.median(bench, "cpu-s-leader")),
			fmtNum(d.median(bench, "cpu-s-followers")), fmtNum(d.median(bench, "cpu-s-workers")), fmtNum(2*converge))
	}
}

// scaleLimit explains a slow scale-up from the run's own CPU figures.
func scaleLimit(bench string) func(d *data) string {
	return func(d *data) string {
		converge, workers := d.median(bench, "s/converge"), d.median(bench, "cpu-s-workers")
		leader, followers := d.median(bench, "cpu-s-leader"), d.median(bench, "cpu-s-followers")
		tasks := d.median(bench, "tasks/s") * converge
		perTask := "?"
		if tasks > 0 {
			perTask = fmtNum((leader + followers) / tasks * 1000)
		}
		return fmt.Sprintf("The CPUs: during the scale-up the 3 managers and the benchmark process used %s of the %s CPU-seconds the 2 CPUs offered "+
			"(leader %s, followers %s, simulated workers %s), so they were busy throughout. The workers' share is the executor's work for 1,000 hosts "+
			"(a controller and a few record writes per task, the agents' gRPC sessions, and the Go garbage collector scanning 100,000 controllers' stacks), "+
			"which on real hosts runs on the workers' own CPUs. The managers spent %s ms of CPU per task, together: every manager applies each task write "+
			"(its creation with its placement, then the status changes the agents report) to its store, and the leader also runs the orchestrator "+
			"(which skips the reports that cannot change the plan, but makes a full pass every 10 s) and the dispatcher. Alone on these 2 CPUs, "+
			"the managers' work would take at least %s s; the target needs it, and the workers' share, to shrink further.",
			fmtNum(workers+leader+followers), fmtNum(2*converge), fmtNum(leader), fmtNum(followers), fmtNum(workers),
			perTask, fmtNum((leader+followers)/2))
	}
}
