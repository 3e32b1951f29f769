package main

import "fmt"

// BenchmarkSwarm's leaves.
const (
	swarmScale  = "BenchmarkSwarm/scale"
	swarmUpdate = "BenchmarkSwarm/update"
	swarmKill   = "BenchmarkSwarm/kill"
	swarmStack  = "BenchmarkSwarm/stack"
	swarmLoad   = "BenchmarkSwarm/load"
)

// swarmWhat describes the setting every Swarm comparison shares.
const swarmWhat = "shoal and Docker Swarm side by side, on the same machine in the same run, with the same demo images loaded into every node of both. " +
	"shoal: 3 nodes (1 manager, 2 workers, containerd runtime), each in a network namespace of its own. Swarm: 3 dockerd 20.10 from Debian's docker.io " +
	"(1 manager, 2 workers), each in a network namespace of its own on the same test network, with its own data root, exec root, containerd and cgroup parent. " +
	"Each side is driven through its own CLI, every command with --detach (Swarm's with --no-resolve-image: no registry is reachable, nodes run the images they hold), " +
	"and polled through its own API (shoal's ListTasks, the Engine API's /tasks) every 10 ms; a step ends when the API shows what the user waits for. " +
	"This kernel has no IPVS, so Swarm's VIPs and ingress routing mesh cannot work here: its services use endpoint mode dnsrr and host-mode published ports. " +
	"Each sample times shoal, then Swarm."

// swarmPeer names the peer of every comparison.
const swarmPeer = "Docker Swarm 20.10, measured in the same run (the *-swarm-* metrics in All results). The issue's targets: shoal at most 1/5 of Swarm's time " +
	"to create and to scale (Swarm took about 16 s to go from 3 to 50 replicas on these machines), and no failed requests where Swarm has some."

var swarmFigures = []figure{
	swarmRatio("Swarm side by side: create 50 replicas, shoal / Swarm", swarmScale, "create",
		"`service create --replicas 50` of words-db (its health check off) until 50 tasks run.", true),
	swarmRatio("Swarm side by side: scale 50 → 100, shoal / Swarm", swarmScale, "up",
		"`service scale NAME=100` of that service until 100 tasks run.", true),
	swarmRatio("Swarm side by side: scale 100 → 0, shoal / Swarm", swarmScale, "down",
		"`service scale NAME=0` until no task of the service runs or stops; the service is then removed (untimed).", true),
	swarmRatio("Swarm side by side: rolling update of 10 replicas, shoal / Swarm", swarmUpdate, "update",
		"`service update --image words-web:vN --update-order stop-first` (parallelism 1, both systems' default) of 10 words-web replicas, "+
			"to the version they do not run, until every task runs it and passes the image's health check (every 2 s).", false),
	swarmRatio("Swarm side by side: killed container replaced, shoal / Swarm", swarmKill, "replace",
		"SIGKILL of the process of a 1-replica words-db service (health check off, `--restart-delay 0s` on both: the default 5 s of both would hide "+
			"the rest) until another task of the service runs.", false),
	swarmRatio("Swarm side by side: stack deploy of words.yml, shoal / Swarm", swarmStack, "stack",
		"`stack deploy` of testdata/stacks/words.yml (1 database, 3 application servers, 3 web servers, each with a health check every 2 s) "+
			"until all 7 tasks run and are healthy; the stack is then removed (untimed). Swarm gets a copy Docker 20.10 accepts: `version: \"3.8\"` added "+
			"(it refuses a file without one), depends_on removed (its long form with `condition: service_healthy` is not in the 3.x schema, and Swarm "+
			"ignores depends_on: it starts all three tiers at once, where shoal starts each tier once its dependency is healthy), endpoint_mode dnsrr and "+
			"port 8080 in host mode.", false),
	{
		Title:   "Swarm side by side: failed requests during a rolling update, shoal",
		Bench:   swarmLoad,
		Unit:    "failed-shoal",
		What:    swarmWhat + swarmLoadWhat + " shoal: published on every node through its routing mesh (HTTP mode).",
		Target:  &target{AtMost: true, Value: 0},
		Peer:    swarmPeer,
		Observe: swarmLoadObserve,
		Limit:   swarmLoadLimit,
	},
	{
		Title: "Swarm side by side: failed requests during a rolling update, Swarm",
		Bench: swarmLoad,
		Unit:  "failed-swarm",
		What:  swarmWhat + swarmLoadWhat + " Swarm: published in host mode on the node of each task (one task per node).",
	},
}

// swarmLoadWhat describes the loaded rolling update.
const swarmLoadWhat = " A service of 3 words-web replicas (GET / renders a small page), port 8088 published on every node, under testutil.StartLoad's load " +
	"(8 workers, one new connection per request, at most one request per worker every 10 ms, 2 s timeout; each request to the next of the 3 nodes " +
	"in turn, as a client with the list of the nodes does); once 50 requests are done, `service update --image words-web:vN --update-order " +
	"stop-first` (parallelism 1) to the version it does not run, until every task runs it and is healthy. A failed request got no answer or " +
	"one other than 2xx."

// swarmRatio is the figure of a timed step: shoal's time divided by
// Swarm's, in the same sample.
func swarmRatio(title, bench, step, what string, hasTarget bool) figure {
	f := figure{
		Title: title,
		Bench: bench,
		Unit:  step + "-ratio",
		What:  swarmWhat + " " + what + " The figure is shoal's time divided by Swarm's in the same sample.",
		Peer:  swarmPeer,
		Observe: func(d *data) string {
			return fmt.Sprintf("shoal took %s ms, Swarm %s ms (medians; min–max %s and %s ms).",
				fmtNum(d.median(bench, step+"-shoal-ms")), fmtNum(d.median(bench, step+"-swarm-ms")),
				spread(d, bench, step+"-shoal-ms"), spread(d, bench, step+"-swarm-ms"))
		},
	}
	if hasTarget {
		f.Target = &target{AtMost: true, Value: 0.2}
		f.Limit = func(d *data) string {
			return fmt.Sprintf("shoal took %s ms against Swarm's %s ms. Each of shoal's containers costs a containerd shim, runc create and start, a "+
				"task-logger process and a network namespace with its veth; Swarm's cost the same shim and runc plus dockerd's own work. Both "+
				"clusters, their 6 containerd and up to 100 containers share the machine's 2 cores; the load average printed with the figures shows "+
				"what else it was doing.", fmtNum(d.median(bench, step+"-shoal-ms")), fmtNum(d.median(bench, step+"-swarm-ms")))
		}
	}
	return f
}

// spread is a metric's min–max.
func spread(d *data, bench, unit string) string {
	s, ok := d.summary(bench, unit)
	if !ok {
		return "–"
	}
	return fmtNum(s.Min) + "–" + fmtNum(s.Max)
}

func swarmLoadObserve(d *data) string {
	return fmt.Sprintf("shoal: %s failed of %s requests, release %s s; Swarm: %s failed of %s requests, release %s s (medians).",
		fmtNum(d.median(swarmLoad, "failed-shoal")), fmtNum(d.median(swarmLoad, "requests-shoal")), fmtNum(d.median(swarmLoad, "release-s-shoal")),
		fmtNum(d.median(swarmLoad, "failed-swarm")), fmtNum(d.median(swarmLoad, "requests-swarm")), fmtNum(d.median(swarmLoad, "release-s-swarm")))
}

func swarmLoadLimit(d *data) string {
	return fmt.Sprintf("shoal failed %s requests (median) where Swarm failed %s. The raw output logs every release's failed requests by reason "+
		"(connection refused, reset, timeout, HTTP status).", fmtNum(d.median(swarmLoad, "failed-shoal")), fmtNum(d.median(swarmLoad, "failed-swarm")))
}
