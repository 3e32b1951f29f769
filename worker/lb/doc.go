// Package lb is a node's load balancer for service virtual IPs: every new
// connection from a task (or from the node itself) to VIP:port goes to one
// of the service's ready tasks, same port, on this node or another.
//
// Why nftables DNAT: Docker Swarm and kube-proxy balance VIPs with IPVS,
// which the kernels shoal runs on may lack. Destination NAT in nftables
// needs nothing but conntrack and nf_tables, and keeps the balancing in the
// kernel: no proxy process, no copy, the backend sees the client's address.
// The LB drives the nft command with a generated script on its standard
// input, as go-iptables drives iptables: no netlink library for nftables.
//
// Clients: a task on several networks has one address on each, and tasks
// on different networks cannot reach each other, so a VIP must send a
// client to its backend's address on a network the client is on. A
// Service says so with Sources: a client prefix (the agent gives one per
// task of the node, a /32) and the service's backends for it. A task's
// connection to a VIP is NATed on the task's own node, so a node needs
// Sources for its own tasks only. A task with no Source, or whose Source
// has no backends (it shares no network with the service), is rejected; the
// node itself (output hook) gets the Service's Backends.
//
// The table (family ip, Config.Table, one per node on a machine):
//
//   - map sourced (interval map keyed by "client prefix . VIP": jump
//     svc_<hash>_<prefix>), looked up from a nat chain on prerouting (tasks'
//     packets arrive through the bridge), and map vips (VIP → jump
//     svc_<hash of service ID>), looked up from a nat chain on output (the
//     node's own connections, which always get Backends).
//     Each of a service's chains holds one rule: "dnat to numgen random
//     mod N map { 0 : b0, 1 : b1, … }". A connection's first packet
//     costs one lookup, not a rule per service or per client: in sourced a
//     concatenated-interval ("pipapo") match of a few bitmap ANDs per
//     4-bit group of the key, each as wide as the elements' count over 64
//     (13 words for 800 elements); in vips a hash probe.
//   - sets vipaddrs (every VIP) and closed (VIPs whose Backends are empty).
//     Filter chains on prerouting and output reject what is still
//     addressed to them after DNAT (vipaddrs on prerouting: a client with
//     no backends; closed on output), TCP with a reset and anything else
//     with ICMP port unreachable (the node's own datagrams fail in write
//     with EPERM), so a client never waits on a black hole.
//   - set hairpin ("b . b" for every backend b of every source) and a
//     postrouting nat rule masquerading DNATed packets whose source and
//     destination are the same address: a task reaching itself through
//     its service's VIP would otherwise see a packet from its own address
//     and drop it as a martian. It then sees the connection come from the
//     bridge's gateway.
//
// Atomicity and cost: Apply takes the whole desired set. It compares it
// with what it applied last and writes only the difference (elements of
// the maps and sets deleted and added, chains of a changed network or
// catch-all flushed and refilled, those of a network or service gone
// deleted) as one nft script, which nft commits as one transaction: no
// packet sees a VIP without its rule, or a mix of old and new backends.
// Only services that changed are looked at. An Apply that changes nothing
// does not start nft. If the difference is refused (someone edited the
// table), or when the LB does not know the table's contents (a table found
// at New, after Destroy), the table is replaced whole, again in one
// transaction ("add table; delete table; table { … }"). A table left by an
// earlier run of the agent is kept until the first Apply, so VIPs keep
// answering across an agent restart.
//
// Costs measured (BenchmarkApply, 1,000 services × 10 backends, on a
// 2-core VM whose load average was about 10 from other builds, so the
// figures are loose upper bounds): replacing the whole table 0.5–1.0 s;
// one service changed 80–310 ms, nearly all of it starting nft (about
// 70 ms even for "nft list tables" on that machine) and nft reading the
// table's 1,000 chains into its cache; nothing changed 1.5–20 ms, no nft
// run. A nat chain only sees a connection's first packet.
//
// With networks (BenchmarkApplySources: 200 services, each with 10
// Backends and 4 Sources of 10 backends, so 1,000 chains, 800 sourced
// elements and 10,000 addresses; same VM, load average 6–25, figures are
// ranges over runs): replacing the whole table 0.34–0.77 s, one network
// of one service changed 54–120 ms. Before networks, on the same machine
// in the same minutes, 200 services × 10 backends took 70–150 ms whole
// and 23–26 ms for one change; 800 services × 10 backends, the same
// 1,000 chains, took 0.25–0.36 s whole and 42–81 ms for one change. The
// cost follows the number of chains nft must load, not the networks: the
// interval map adds little beside them.
//
// Conntrack and draining: only a connection's first packet goes through
// the nat chains; conntrack keeps the chosen backend for the rest, so a
// task removed from a service keeps the connections it has until they end
// (draining comes free) and a task that is gone answers them with a reset.
// UDP has no end a client notices, so Apply deletes, through netlink, the
// conntrack entries of UDP flows from a VIP to a backend it removed: the
// next datagram is balanced again.
//
// Assumptions about the node: a client task and its backend on the same
// bridge talk at layer 2 on the way back, so replies are un-DNATed only
// when bridged traffic passes netfilter (br_netfilter loaded,
// net.bridge.bridge-nf-call-iptables=1, as Docker and Kubernetes need too);
// New logs a warning when it does not. The node's own connections need a
// route to the VIP (the default route serves) before the output hook can
// rewrite them. Replies from a backend on another node come back through
// this node because the client's address is routed here, so no source NAT
// is needed.
package lb
