package main

import "fmt"

// dnsBench is BenchmarkDNS's leaf.
const dnsBench = "BenchmarkDNS/services=100/tasks=3"

// dnsWhat describes the setting the DNS figures share.
const dnsWhat = "The node's DNS server (netdns, in the benchmark process) and dnsmasq 2.90 (cache on, `--local-ttl=1`) answer the same 100 service names " +
	"(A, one address each, TTL 1 s) on 127.0.0.1 over UDP; dnsperf 2.10 (`-c 4 -q 500`, 10 s, no rate limit) sends one query file of those names, " +
	"two runs per server, alternately. Everything shares the machine's 2 vCPUs, dnsperf included, so dnsperf's own speed caps both servers' rates."

var dnsFigures = []figure{
	{
		Title: "DNS queries/s per CPU core, cluster names",
		Bench: dnsBench,
		Unit:  "qps-per-core-shoal",
		What: dnsWhat + " The rate divided by the CPU seconds the server used per wall second: for netdns the getrusage delta of the benchmark process " +
			"(the server and the Go runtime; dnsperf is another process), for dnsmasq its /proc/PID/stat.",
		Target: &target{AtMost: false, Value: 50000},
		Peer:   "dnsmasq measured in the same run: see the Observe line.",
		Limit:  dnsLimit,
		Observe: func(d *data) string {
			if v := d.median(dnsBench, "qps-per-core-dnsmasq"); v > 0 {
				return fmt.Sprintf("dnsmasq answered %s queries/s per core in the same run.", fmtNum(v))
			}
			return ""
		},
	},
	{
		Title:  "DNS throughput against dnsmasq",
		Bench:  dnsBench,
		Unit:   "x-dnsmasq",
		What:   dnsWhat + " The ratio of the two servers' median rates (1.0: as fast as dnsmasq).",
		Target: &target{AtMost: false, Value: 1.0},
		Peer:   "dnsmasq, measured in the same run.",
		Limit:  dnsLimit,
		Observe: func(d *data) string {
			s, m := d.median(dnsBench, "qps-shoal"), d.median(dnsBench, "qps-dnsmasq")
			if s == 0 || m == 0 {
				return ""
			}
			return fmt.Sprintf("netdns %s queries/s, dnsmasq %s queries/s (medians).", fmtNum(s), fmtNum(m))
		},
	},
	{
		Title: "DNS p99 latency at 10,000 queries/s",
		Bench: dnsBench,
		Unit:  "p99-ms-shoal",
		What:  "The same servers and names; dnsperf at a fixed 10,000 queries/s for 5 s with per-query latencies (`-v`); the 99th percentile over every query.",
		Peer:  "dnsmasq, measured in the same run: see the Observe line.",
		Observe: func(d *data) string {
			if v := d.median(dnsBench, "p99-ms-dnsmasq"); v > 0 {
				return fmt.Sprintf("dnsmasq's p99 in the same run: %s ms.", fmtNum(v))
			}
			return ""
		},
	},
	{
		Title: "DNS: task ready → resolvable (server side)",
		Bench: dnsBench,
		Unit:  "ms-ready-to-resolvable",
		What:  "Only the DNS server's part of service discovery: build a table with one more ready task, Swap it in, query tasks.<service> over UDP until the new address is answered; median of 20. The agent's part (the managers' update reaching the node) is measured end to end elsewhere.",
	},
	{
		Title: "DNS: task stopping → gone (server side)",
		Bench: dnsBench,
		Unit:  "ms-stopping-to-gone",
		What:  "As above, the other way: Swap the table without the task back in, query until its address is no longer answered; median of 20.",
	},
}

func dnsLimit(d *data) string {
	return fmt.Sprintf("Both servers spend most of their CPU in the kernel's UDP receive and send on loopback (a profile of netdns under dnsperf shows about two thirds of its time in recvmmsg/sendmmsg, "+
		"answering itself is under 1 µs a query), and dnsperf competes for the same 2 vCPUs: dnsmasq answered %s queries/s per core in this run; "+
		"the load average printed with the figures shows what else the machine was doing.", fmtNum(d.median(dnsBench, "qps-per-core-dnsmasq")))
}
