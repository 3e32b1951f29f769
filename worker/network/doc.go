// Package network gives each container task its own network namespace on
// the node's bridge, and joins the node's task subnet to the other nodes'.
//
// What is created where:
//
//   - Node level (SetSubnet): the bridge (Config.Bridge, default "shoal0")
//     holding the first address of the node's subnet as the tasks' gateway;
//     net.ipv4.ip_forward=1 and route_localnet on the bridge; iptables chains
//     SHOAL-FORWARD (filter, jumped to first from FORWARD: accept traffic in
//     and out of the bridge even under a FORWARD policy of DROP),
//     SHOAL-POSTROUTING (nat: masquerade traffic from the subnet to anywhere
//     outside the cluster pool, loopback traffic DNATed onto the bridge, and
//     a task's traffic DNATed back onto the bridge by a published port)
//     and SHOAL-PORTS (nat, jumped to from PREROUTING and OUTPUT for local
//     destinations: host-mode published ports). SetPeers adds one route per
//     other node, "subnet via node address", with route protocol
//     RouteProtocol so that only shoal's routes are ever replaced or removed.
//   - Task level (Attach): a named namespace /run/netns/shoal-<node>-<task>
//     (<node> is a hash of the data directory, because /run/netns is shared
//     by every shoal node on a machine), a veth pair whose host side
//     (shv + 12 hex digits, in hairpin mode) is on the bridge and whose
//     other side is eth0 in the namespace, with the task's address and a
//     default route via the gateway; DNAT rules in SHOAL-PORTS for the task's host-mode published
//     ports; and DataDir/network/tasks/<task>/{record.json,hosts,resolv.conf}.
//
// Every iptables rule shoal adds carries a comment "shoal:<bridge>:node" or
// "shoal:<bridge>:task:<id>", so that several nodes sharing one set of
// tables (tests) never remove each other's rules.
//
// What is cleaned up when: Detach removes a task's namespace (unmount and
// delete), veth, DNAT rules and directory. Prune, called at agent start,
// does the same for every recorded task the agent no longer runs, removes
// veths on the bridge and port rules of this bridge that belong to no kept
// task, and never touches a namespace it has no record of. A record is
// written before anything is made, so a crash in the middle of Attach
// leaves something Prune finds; a recorded task whose namespace or veth is
// gone (a reboot empties /run/netns) is remade by the next Attach. Changing
// the subnet removes the old subnet's rules and bridge address; Destroy removes everything this node
// made (tasks, routes, its rules, the bridge) but leaves the shared chains
// and their jumps, which may serve another node.
package network
