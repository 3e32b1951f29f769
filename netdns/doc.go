// Package netdns is shoal's embedded DNS server, one per node. It listens
// on the node's bridge gateway address (UDP and TCP, port 53) in the host
// network namespace; every container's resolv.conf names that address with
// `options ndots:0`. The agent rebuilds the record table from what the
// managers send (services, their VIPs, their READY tasks, per network) and
// swaps it in whole (Server.Swap); a Table is never patched in place, so a
// query sees one table from start to end.
//
// # Names
//
// Matching is case-insensitive; answers carry the owner name as the client
// spelled it. For a querier on network N:
//
//   - every name of a service (Service.Names: "web", "web.words",
//     "words_web") answers A/AAAA with the service's VIP on each network it
//     shares with the querier; in dnsrr mode with the ready tasks'
//     addresses on those networks instead.
//   - tasks.<name> answers every ready task's address on the shared
//     networks, whatever the endpoint mode.
//   - a task's name ("web.1.<id>") answers that task's addresses.
//   - an alias (Attachment.Aliases) answers like the service's names, but
//     only to queriers on the alias's network; tasks.<alias> likewise.
//   - _<port>._<proto>.<name> (ports with a Name) answers one SRV record
//     per ready task: priority 0, weight 1, the target port, the task name
//     as target; the targets' address records come in the additional
//     section, so no second query is needed.
//   - PTR: <VIP>.in-addr.arpa answers the service's first name, a task
//     address answers the task name.
//
// Multi-address answers are rotated per query so clients that take the
// first address spread their connections over all of them.
//
// # Scoping
//
// Config.Scope maps the query's source address to the querier's networks.
// A querier sees only the services it shares a network with; an unknown
// source (the host itself, a debug client) sees every network. Lookup
// answers as a querier on the networks it is given (nil: all).
//
// A cluster name that exists only on networks the querier is not on is
// NXDOMAIN, and is NOT forwarded upstream: forwarding would leak the
// cluster's service names to the upstream resolvers (and to whoever watches
// them), and would let an outside name shadow a service for some tasks
// only, so that the same name would mean two things depending on where a
// container runs. Keeping it NXDOMAIN makes a name either the cluster's or
// not, for everybody.
//
// # Answers and errors
//
// Cluster answers have the AA bit and a TTL of Config.TTL (1 s by
// default; 0 allowed): stale DNS caches are the classic failure of
// service discovery, so answers are meant to be asked again.
//
//   - a name not in the table is forwarded (see below). A tasks.<x> or
//     _<port>._<proto>.<x> name where x is not a cluster name, or a task
//     name the table does not have (the task is not ready), is forwarded
//     too: it may well be an outside name.
//   - a cluster name with no record of the asked type (AAAA of an IPv4
//     service, MX, TXT, …) is NOERROR with an empty answer (NODATA).
//   - a dnsrr service with no ready task, and tasks.<name> with no ready
//     task, are NODATA as well, not NXDOMAIN (Docker answers NXDOMAIN).
//     The service exists and its tasks are coming: NXDOMAIN says the name
//     does not exist for any type, and stub resolvers and caches treat it
//     as a fact about the name (glibc moves on to the search list; RFC 2308
//     caches it); NODATA without an SOA record, as here, is not cached
//     (RFC 2308 §5), so the first query after a task turns ready gets it.
//   - ANY is answered, RFC 8482-style, with the records the name has for
//     the querier (a cluster name has a handful); outside names forward it.
//   - opcodes other than QUERY (NOTIFY, UPDATE, STATUS …): NOTIMP. Zone
//     transfers (AXFR, IXFR): NOTIMP.
//   - a class other than IN (CHAOS version.bind …): REFUSED; the server
//     has no data of other classes, and REFUSED tells a client to ask
//     elsewhere.
//   - zero or several questions, answer or authority records in a query,
//     more than two additional records, or a query that does not parse
//     after a valid header: FORMERR with the query's ID.
//   - fewer than 12 bytes (no header) and any message with the QR bit set
//     (a response sent to us): no answer at all; answering garbage or
//     responses only feeds reflection loops and amplification.
//   - a query too big for the UDP read buffer (64 KiB) cannot exist; big
//     queries are parsed like any other.
//
// # Forwarding
//
// Outside names go to Config.Upstreams in order (empty: the nameservers of
// the host's /etc/resolv.conf, minus the server's own addresses; loopback
// resolvers work because the server runs in the host namespace). The query
// is sent as the client sent it, its EDNS0 OPT and UDP size included, over
// UDP when the client used UDP; a truncated upstream answer is asked again
// over TCP. Each exchange is bounded by 2 s; an upstream that fails or
// times out is skipped, and when none answers the client gets SERVFAIL.
// The upstream's rcode (NXDOMAIN included) is passed through. Nothing is
// cached: the upstream (systemd-resolved, a site resolver) caches.
//
// Every UDP answer, cluster or forwarded, is cut to what the client can
// take (512 bytes, or its EDNS0 size up to 4096) with TC set, so the
// client retries over TCP, where the whole answer fits.
//
// # Serving and limits
//
// UDP: one socket per CPU on the same port (SO_REUSEPORT, so the kernel
// spreads queries), each read by one goroutine that answers cluster names
// inline: no goroutine per query. A forwarded query gets its own goroutine,
// at most 1,024 at once (past that: SERVFAIL at once), so a slow upstream
// never stalls the cluster's names. TCP: miekg/dns's server behind a
// listener that holds Accept while 256 connections are open; each read
// waits at most 2 s, an idle connection is closed after 8 s, and a
// connection serves at most 256 queries.
//
// The Table holds every answer record prebuilt (one per name, type and
// network), so a query costs a map lookup, a slice copy and the packing of
// the answer.
//
// # Performance
//
// Measured by bench/dns_test.go's BenchmarkDNS on the project's 2-vCPU
// machine: dnsperf 2.10 on 127.0.0.1, 100 service names (A), the same
// names served by dnsmasq 2.90 from a hosts file in the same run, dnsperf
// sharing the 2 vCPUs with the server (and, during these runs, with other
// builds: load average 4 to 14).
//
//	                                   queries/s   per CPU core   vs dnsmasq
//	one recvfrom/sendto per query         57,500         76,000        0.94×
//	recvmmsg/sendmmsg, 32 per batch   81,000–93,000  138,000–166,000  1.4–1.6×
//	dnsmasq (same runs)               52,000–61,000   97,000–108,000
//
// A profile under dnsperf shows two thirds of the server's CPU in the
// kernel's UDP receive and send; answering itself (decode, table lookup,
// encode) is about 0.6–0.9 µs and 5 allocations per query
// (BenchmarkServePacket), which is why batching the system calls, not the
// Go code, doubled the rate. p99 latency at a fixed 10,000 queries/s is in
// the low milliseconds for both servers and moves with the machine's load
// (0.9 to 4 ms for netdns, 0.9 to 2.6 ms for dnsmasq over several runs).
//
// Building a Table (the agent's rebuild on every change) takes 35–55 ms
// for 1,000 services of 10 ready tasks with a named port each
// (BenchmarkNewTable), off the serving path; a Swap followed by a query
// sees the new table in under 1–3 ms for the 100-service table.
package netdns
