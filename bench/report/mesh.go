package main

import "fmt"

// meshBench is BenchmarkMesh's name.
const meshBench = "BenchmarkMesh"

// meshWhat describes the setting every mesh figure shares.
const meshWhat = "Three backends (one nginx process, 1 worker, three servers on 127.0.0.1 answering `200 ok`) stand in for three tasks. " +
	"wrk (2 threads, 64 keep-alive connections, 10 s) loads (a) the routing mesh in TCP mode, (b) the mesh in HTTP mode, each its own process " +
	"(worker/mesh/internal/meshproxy, GOMAXPROCS 2), and (c) nginx with 2 worker processes (as many as the mesh's GOMAXPROCS) proxying to an upstream of " +
	"the three servers with `keepalive 32`, `proxy_http_version 1.1`, `proxy_set_header Connection \"\"` and X-Forwarded-For, as a competent operator " +
	"configures it; in the order a, b, c, a, b, c, each figure the mean of its two runs. wrk, the proxies and the backends share the machine's 2 cores."

// meshFigures are the routing mesh's figures (worker/mesh).
var meshFigures = []figure{
	{
		Title:  "Routing mesh, TCP mode, throughput relative to nginx",
		Bench:  meshBench,
		Unit:   "x-nginx-tcp",
		What:   meshWhat + " Requests/s through the mesh in TCP mode (each client connection spliced to one backend) divided by requests/s through nginx.",
		Target: &target{AtMost: false, Value: 0.8},
		Peer:   "nginx, measured in the same run (rps-nginx). Docker Swarm's ingress (IPVS) cannot run on this kernel.",
		Limit:  meshLimit("mesh-tcp"),
	},
	{
		Title:  "Routing mesh, HTTP mode, throughput relative to nginx",
		Bench:  meshBench,
		Unit:   "x-nginx-http",
		What:   meshWhat + " Requests/s through the mesh in HTTP mode (each request balanced on its own, X-Forwarded-For added) divided by requests/s through nginx.",
		Target: &target{AtMost: false, Value: 0.8},
		Peer:   "nginx, measured in the same run (rps-nginx).",
		Limit:  meshLimit("mesh-http"),
	},
	{Title: "Routing mesh, TCP mode, requests/s", Bench: meshBench, Unit: "rps-mesh-tcp", What: meshWhat},
	{Title: "Routing mesh, HTTP mode, requests/s", Bench: meshBench, Unit: "rps-mesh-http", What: meshWhat},
	{Title: "nginx reverse proxy, requests/s", Bench: meshBench, Unit: "rps-nginx", What: meshWhat},
	{Title: "Routing mesh, TCP mode, p99 latency", Bench: meshBench, Unit: "p99-ms-mesh-tcp", What: meshWhat + " wrk's 99th percentile."},
	{Title: "Routing mesh, HTTP mode, p99 latency", Bench: meshBench, Unit: "p99-ms-mesh-http", What: meshWhat + " wrk's 99th percentile."},
	{Title: "nginx reverse proxy, p99 latency", Bench: meshBench, Unit: "p99-ms-nginx", What: meshWhat + " wrk's 99th percentile."},
}

// meshLimit explains a missed mesh target from the run's own figures.
func meshLimit(name string) func(d *data) string {
	return func(d *data) string {
		return fmt.Sprintf("The mesh served %s requests/s against nginx's %s with a `200 ok` body, where the proxy's per-request cost is everything: "+
			"per request the mesh wakes a goroutine through Go's netpoller for each direction (TCP mode), and in HTTP mode also parses the request and builds "+
			"a new one through net/http and httputil.ReverseProxy, where nginx's 2 event loops do the same work without scheduling. "+
			"The 2 cores are shared with wrk and the backends, so the load average printed with the figures (other work on the machine) moves every number.",
			fmtNum(d.median(meshBench, "rps-"+name)), fmtNum(d.median(meshBench, "rps-nginx")))
	}
}
