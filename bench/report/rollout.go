package main

import "fmt"

// BenchmarkRollingUpdate's leaves.
const (
	rolloutStartFirst = "BenchmarkRollingUpdate/shoal/order=start-first"
	rolloutStopFirst  = "BenchmarkRollingUpdate/shoal/order=stop-first"
	rolloutNginx      = "BenchmarkRollingUpdate/nginx/blue-green"
)

// rolloutWhat describes the setting every rolling-update figure shares.
const rolloutWhat = "A release of 3 replicas under steady HTTP load: 3 nodes (1 manager, 2 workers, real processes, containerd runtime, each in a network " +
	"namespace of its own) run the demo front words-web (GET / renders a small page; an HTTP health check every second). wrk (2 threads, 32 keep-alive " +
	"connections, its default 2 s timeout) loads the entry point on the manager from the benchmark's namespace for 10 s at rest, then again from 1 s " +
	"before the release starts until the last old task has ended (wrk stopped with SIGINT). Failed requests are wrk's non-2xx/3xx answers plus its socket " +
	"errors (connect, read, write, timeout)."

// rolloutShoalWhat is what a shoal leaf releases.
func rolloutShoalWhat(order string) string {
	return " shoal: service web published through the routing mesh in HTTP mode (each request balanced on its own); `shoal service update --image " +
		"words-web:vN --update-order " + order + "` to the version it does not run (default update config: one task at a time, monitor 5 s); the old " +
		"tasks leave the endpoints, drain their connections, then get SIGTERM."
}

// rolloutNginxWhat is what the nginx leaf releases.
const rolloutNginxWhat = " nginx: on the manager's host, 2 worker processes proxying to an `upstream` (keepalive 32, as in the routing mesh figures) " +
	"over the 3 task addresses of a shoal service; the hand-made blue-green release people do today: create a second service of the other " +
	"version, wait until its 3 tasks are ready, rewrite the upstream to their addresses, `nginx -s reload`, remove the first service."

// rolloutRatioWhat is what a ratio figure divides.
const rolloutRatioWhat = " The figure is wrk's 99th percentile latency during the release divided by its 99th percentile in the 10 s at rest just before."

// rolloutTargetPeer names the targets and the peer.
const rolloutTargetPeer = "The issue's targets: 0 failed requests, and p99 during the update within 2× of p99 at rest. Beside it, nginx reloaded by hand " +
	"in the same run (the nginx/blue-green figures)."

var rolloutFigures = []figure{
	rolloutFailed("start-first", rolloutStartFirst),
	rolloutRatio("start-first", rolloutStartFirst),
	{Title: "Rolling update, start-first: p99 at rest", Bench: rolloutStartFirst, Unit: "p99-rest-ms", What: rolloutWhat + rolloutShoalWhat("start-first")},
	{Title: "Rolling update, start-first: p99 during the release", Bench: rolloutStartFirst, Unit: "p99-release-ms", What: rolloutWhat + rolloutShoalWhat("start-first")},
	rolloutFailed("stop-first", rolloutStopFirst),
	rolloutRatio("stop-first", rolloutStopFirst),
	{Title: "Rolling update, stop-first: p99 at rest", Bench: rolloutStopFirst, Unit: "p99-rest-ms", What: rolloutWhat + rolloutShoalWhat("stop-first")},
	{Title: "Rolling update, stop-first: p99 during the release", Bench: rolloutStopFirst, Unit: "p99-release-ms", What: rolloutWhat + rolloutShoalWhat("stop-first")},
	{Title: "nginx blue-green release by hand: failed requests", Bench: rolloutNginx, Unit: "failed", What: rolloutWhat + rolloutNginxWhat},
	{Title: "nginx blue-green release by hand: p99 during / at rest", Bench: rolloutNginx, Unit: "p99-ratio", What: rolloutWhat + rolloutNginxWhat + rolloutRatioWhat},
	{Title: "nginx blue-green release by hand: p99 at rest", Bench: rolloutNginx, Unit: "p99-rest-ms", What: rolloutWhat + rolloutNginxWhat},
	{Title: "nginx blue-green release by hand: p99 during the release", Bench: rolloutNginx, Unit: "p99-release-ms", What: rolloutWhat + rolloutNginxWhat},
}

func rolloutFailed(order, bench string) figure {
	return figure{
		Title:   "Rolling update, " + order + ": failed requests",
		Bench:   bench,
		Unit:    "failed",
		What:    rolloutWhat + rolloutShoalWhat(order),
		Target:  &target{AtMost: true, Value: 0},
		Peer:    rolloutTargetPeer,
		Limit:   rolloutLimit(bench),
		Observe: rolloutObserve(bench),
	}
}

func rolloutRatio(order, bench string) figure {
	return figure{
		Title:   "Rolling update, " + order + ": p99 during / at rest",
		Bench:   bench,
		Unit:    "p99-ratio",
		What:    rolloutWhat + rolloutShoalWhat(order) + rolloutRatioWhat,
		Target:  &target{AtMost: true, Value: 2},
		Peer:    rolloutTargetPeer,
		Limit:   rolloutLimit(bench),
		Observe: rolloutObserve(bench),
	}
}

// rolloutObserve sets a shoal leaf beside the hand-made nginx release.
func rolloutObserve(bench string) func(d *data) string {
	return func(d *data) string {
		if _, ok := d.summary(rolloutNginx, "failed"); !ok {
			return ""
		}
		return fmt.Sprintf("The release took %s s; nginx's hand-made release in the same run failed %s requests, its p99 went from %s ms at rest to %s ms (%s×) "+
			"and it took %s s.",
			fmtNum(d.median(bench, "release-s")), fmtNum(d.median(rolloutNginx, "failed")), fmtNum(d.median(rolloutNginx, "p99-rest-ms")),
			fmtNum(d.median(rolloutNginx, "p99-release-ms")), fmtNum(d.median(rolloutNginx, "p99-ratio")), fmtNum(d.median(rolloutNginx, "release-s")))
	}
}

// rolloutLimit explains a missed target from the run's own figures.
func rolloutLimit(bench string) func(d *data) string {
	return func(d *data) string {
		return fmt.Sprintf("The median run failed %s requests (%s at rest) and its p99 went from %s ms at rest to %s ms during the release. wrk, the three "+
			"nodes, their containerd and the nine to twelve containers share the machine's 2 cores, so a replacement starting (its container, its health "+
			"checks) takes CPU from the requests in flight; the load average printed with the figures shows what else the machine was doing, and the "+
			"raw output logs every release's failed requests by kind (wrk's non-2xx/3xx answers and socket errors).",
			fmtNum(d.median(bench, "failed")), fmtNum(d.median(bench, "failed-at-rest")),
			fmtNum(d.median(bench, "p99-rest-ms")), fmtNum(d.median(bench, "p99-release-ms")))
	}
}
