// Package network gives each container task its own network namespace with
// one interface per network it is on, joins each network's slice on this
// node to the other nodes' slices, and keeps networks apart.
//
// What is created where:
//
//   - Node level (SetNetworks): one bridge per network holding the first
//     address of the node's slice of the network as its tasks' gateway.
//     The default network (DefaultID; its subnet is the cluster's task
//     pool) uses Config.Bridge (default "shoal0"); any other network uses
//     "shn" + 12 hex digits of a hash of the node's tag and the network ID,
//     unique per node and network on a machine. net.ipv4.ip_forward=1 and
//     route_localnet on each bridge. iptables chains, shared by every node
//     on a host: SHOAL-FORWARD (filter, jumped to first from FORWARD:
//     isolation first, then accept traffic in and out of each bridge even
//     under a FORWARD policy of DROP), SHOAL-ISOLATE and SHOAL-ISOLATE-DST
//     (filter, see Isolation), SHOAL-POSTROUTING (nat: masquerade traffic
//     from a slice to anywhere outside its network, loopback traffic
//     DNATed onto a bridge, and a task's traffic DNATed back onto its
//     bridge by a published port) and SHOAL-PORTS (nat, jumped to from
//     PREROUTING and OUTPUT for local destinations: host-mode published
//     ports, DNATed to the task's primary address). What SetNetworks made
//     is recorded in DataDir/network/node.json (a record of an older agent,
//     {pool, subnet}, is read as the default network). SetPeers adds one
//     route per other node's slice of each network, "slice via node
//     address", with route protocol RouteProtocol so that only shoal's
//     routes are ever replaced or removed.
//   - Task level (Attach): a named namespace /run/netns/shoal-<node>-<task>
//     (<node> is a hash of the data directory, because /run/netns is shared
//     by every shoal node on a machine) and one veth pair per network of
//     the task: eth0 on the primary network (host side shv + 12 hex digits
//     of node and task) with the default route via its gateway, eth1… on
//     the others (shv + 12 hex digits of node, task and network) each with
//     a route to its network's whole subnet via its gateway, so that
//     traffic to another node's task on that network leaves by that
//     interface with that network's address. Host sides are in hairpin
//     mode. DNAT rules in SHOAL-PORTS for the task's host-mode published
//     ports; and DataDir/network/tasks/<task>/{record.json,hosts,
//     resolv.conf}: hosts lists every address of the task, resolv.conf
//     (with Config.ClusterDNS) names the primary network's gateway. A task
//     on a network SetNetworks has not made yet waits for it up to 10 s,
//     then fails with ErrUnknownNetwork.
//
// Isolation: traffic forwarded from one network to another is dropped,
// whichever node it crosses and whichever bridge it came from. The rules
// are address based and O(networks): SHOAL-ISOLATE has, per network N,
// "-s N ! -d N -j SHOAL-ISOLATE-DST", and SHOAL-ISOLATE-DST "-d N -j
// DROP"; so traffic from a network to the outside world or to the host
// passes, traffic into another network does not (replies included, so
// neither side can open a connection). Traffic to and from the host's own
// addresses is not forwarded and stays allowed: the node's DNS on each
// gateway and the routing mesh. Destination-NATed connections skip
// isolation (one shared rule at the top of SHOAL-ISOLATE): the VIP rules
// (worker/lb) already send a task only to backends on a network it shares
// with the service and refuse the others, and a task on several networks
// reaches a VIP from whichever address its route picks; a host-mode
// published port is public anyway.
//
// Every iptables rule shoal adds carries a comment "shoal:<bridge>:node"
// (the network's bridge) or "shoal:<Config.Bridge>:task:<id>", so that
// several nodes sharing one set of tables (tests) never remove each
// other's rules.
//
// What is cleaned up when: Detach removes a task's namespace (unmount and
// delete), veths, DNAT rules and directory. Prune, called at agent start,
// does the same for every recorded task the agent no longer runs, removes
// veths on any of the node's bridges that belong to no kept task, and port
// rules of this node that belong to no kept task, and never touches a
// namespace it has no record of. A record is written before anything is
// made, so a crash in the middle of Attach leaves something Prune finds; a
// recorded task whose namespace or veths are gone (a reboot empties
// /run/netns) is remade by the next Attach. Records of an older agent (one
// veth and address) are read as one interface on the default network. A
// network whose slice changes loses its old address and rules. A network
// SetNetworks no longer lists is removed (its rules and bridge) at once if
// no task of this node is on it; otherwise it is marked removing in
// node.json, takes no new task, and goes with the Detach (or Prune) of its
// last task. Destroy removes everything this node made (tasks, routes,
// every network's rules and bridge) but leaves the shared chains and their
// jumps, which may serve another node.
package network
