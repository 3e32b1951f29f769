package main

// containersBench is BenchmarkContainers' leaf.
const containersBench = "BenchmarkContainers/replicas=50"

// containersWhat describes the setting both container figures share.
const containersWhat = "1 manager running the containerd runtime (its own containerd 1.6, runc, overlayfs) in a network namespace of its own, " +
	"the words-db demo image loaded; each task gets its own network namespace, veth and address on the node's bridge, and its output goes to " +
	"`shoal task-logger` processes started by the shims. The image's HEALTHCHECK (an exec into the container every 2 s) is switched off (`--no-healthcheck`): " +
	"this measures containers starting and stopping, not being probed. ListTasks every 10 ms. Each run uses a new service."

var containerFigures = []figure{
	{
		Title:  "50 containers started on one node",
		Bench:  containersBench,
		Unit:   "ms/start-all",
		What:   containersWhat + " Time from `service create --replicas 50` until ListTasks shows 50 tasks RUNNING.",
		Target: &target{AtMost: true, Value: 3000},
		Peer:   "containerd alone creates and starts one container in about 80 ms, 20 in under 1 s with 4 in parallel, on this kind of machine (ENVIRONMENT.md). The side-by-side Docker Swarm run belongs to the benchmarks issue.",
		Limit:  containersLimit,
	},
	{
		Title:  "50 containers stopped on one node",
		Bench:  containersBench,
		Unit:   "ms/stop-all",
		What:   containersWhat + " Time from `service scale 0` until no task of the service is running or stopping (each stopped with SIGTERM, its container deleted and its network namespace removed before its end is reported).",
		Target: &target{AtMost: true, Value: 3000},
		Limit:  containersLimit,
	},
}

func containersLimit(d *data) string {
	return "Per container the node spawns a containerd shim, runc (create, then start) and a task-logger process, and creates and deletes a network namespace and veth pair; " +
		"on 2 vCPUs these processes' start-up and the kernel's namespace and veth work dominate (worker/network: about 8 ms to attach and 29 ms to detach a task, serialized), " +
		"and the load average printed with the figures shows what else the machine was doing."
}
