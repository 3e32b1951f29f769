// Package membership runs the cluster's gossip layer: every node, manager or
// worker, takes part in one hashicorp/memberlist cluster, encrypted with the
// cluster key.
//
// Gossip answers two questions quickly and cheaply:
//
//   - Is node X still there? A killed node is declared dead by the others in
//     about two seconds on a LAN cluster of 3–10 nodes (see Config for the
//     arithmetic); the manager's leader loops use that to mark a node down
//     without waiting for heartbeats to lapse.
//   - Where are the managers? Every node advertises its Meta (role and gRPC API
//     address), so a worker can find a manager even when the list it saved at
//     join time is stale.
//
// Gossip is a hint, never the source of truth: Raft decides who is a manager
// and which nodes belong to the cluster. A node that gossip calls dead may
// come back (it refutes the accusation and a new EventJoin follows).
//
// The Gossip type keeps its own table of members, fed only by memberlist's
// event callbacks, so readers never touch memberlist's internal node state and
// dead or departed members stay visible (memberlist forgets them).
package membership
