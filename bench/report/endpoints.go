package main

import "fmt"

// endpointsBench is BenchmarkEndpoints' leaf.
const endpointsBench = "BenchmarkEndpoints/nodes=3"

// endpointsWhat describes the setting the endpoint propagation figures share.
const endpointsWhat = "Service discovery end to end, as a client on another node sees it: 3 nodes (1 manager, 2 workers, real processes, containerd runtime), " +
	"each in a network namespace of its own; one service of the test app (`serve`, no health check, so a task is ready as it starts) constrained to the first worker. " +
	"A DNS client in the benchmark process, its UDP socket in the second worker's namespace, asks that node's DNS server (the gateway of its slice of the " +
	"default network) for `tasks.<service>` every 1 ms. Each run scales the service 1 → 2 → 1 twenty times; the figure is the median of the run's 20 samples."

// endpointsReadyWhat is what the ready → resolvable figures time.
const endpointsReadyWhat = " Ready → resolvable: from the new task's status timestamp when ListTasks first shows it RUNNING and ready (stamped by its agent " +
	"when the container started; all nodes share this machine's clock) to the first answer holding its address. It spans the agent's status report " +
	"(batched, at most every 100 ms), the dispatcher's batched status write through Raft, the leader's endpoint table pushing the task to every node's " +
	"Endpoints stream, and the node rebuilding and swapping its DNS table."

// endpointsStopWhat is what the stopping → gone figures time.
const endpointsStopWhat = " Stopping → gone: from the moment `UpdateService` (scale 2 → 1) returned to the client, the write committed, to the first answer " +
	"without one of the two addresses. The task's record carries no time of its desired-state change, so this includes the orchestrator's reaction: " +
	"its debounced pass over the service and the Raft write of the task's desired state, after which the dispatcher drops it from every node's endpoints. " +
	"The task itself is sent its stop signal only later (after the DNS TTL plus a margin), so this is the time a client can still be given a task that is going."

// endpointsP99What describes a p99 figure, which follows its median's.
const endpointsP99What = "As the median above, but the 99th percentile of each run's 20 samples (nearest rank: the largest of them)."

var endpointsFigures = []figure{
	{
		Title:  "Endpoints: task ready → resolvable on another node, median",
		Bench:  endpointsBench,
		Unit:   "ready-to-dns-p50-ms",
		What:   endpointsWhat + endpointsReadyWhat,
		Target: &target{AtMost: true, Value: 100},
		Peer:   "The issue's requirement: a newly ready task is reachable within 100 ms. The DNS server's own share is the \"DNS: task ready → resolvable (server side)\" figure.",
		Limit:  endpointsLimit,
	},
	{
		Title:   "Endpoints: task ready → resolvable on another node, p99",
		Bench:   endpointsBench,
		Unit:    "ready-to-dns-p99-ms",
		What:    endpointsP99What,
		Target:  &target{AtMost: true, Value: 100},
		Peer:    "The issue's requirement: a newly ready task is reachable within 100 ms.",
		Limit:   endpointsLimit,
		Observe: endpointsObserve,
	},
	{
		Title: "Endpoints: task stopping → gone on another node, median",
		Bench: endpointsBench,
		Unit:  "stop-to-dns-p50-ms",
		What:  endpointsWhat + endpointsStopWhat,
	},
	{
		Title: "Endpoints: task stopping → gone on another node, p99",
		Bench: endpointsBench,
		Unit:  "stop-to-dns-p99-ms",
		What:  endpointsP99What,
	},
}

// endpointsObserve compares the end-to-end figure with the DNS server's
// own share measured by BenchmarkDNS.
func endpointsObserve(d *data) string {
	server := d.median(dnsBench, "ms-ready-to-resolvable")
	if server == 0 {
		return ""
	}
	return fmt.Sprintf("The DNS server's own share (Swap of a new table until a query sees it, BenchmarkDNS) was %s ms; the rest is the way from the agent through the managers to the node.",
		fmtNum(server))
}

// endpointsLimit explains a missed ready → resolvable target.
func endpointsLimit(d *data) string {
	return fmt.Sprintf("The agent sends status changes in batches at most every 100 ms (worker/exec flushInterval), so a task that becomes ready soon after "+
		"its previous report (assigned, starting) waits up to 100 ms before the managers hear of it; the dispatcher then collects reports for 10 ms before "+
		"one Raft write. The median over the runs was %s ms, the p99 %s ms; the load average printed with the figures shows what else the 2 vCPUs were doing.",
		fmtNum(d.median(endpointsBench, "ready-to-dns-p50-ms")), fmtNum(d.median(endpointsBench, "ready-to-dns-p99-ms")))
}
