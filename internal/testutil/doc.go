// Package testutil runs real shoal processes for integration tests and
// benchmarks: it builds the binary once per test process, gives every node
// its own loopback address and data dir, starts, kills and restarts daemons,
// and runs CLI commands against a node's local socket.
//
//	c := testutil.NewCluster(t, 3, 1)
//	out, err := c.Managers[0].Shoal(t, "node", "ls")
//
// Every wait is a poll with a deadline (Eventually); nothing sleeps to let
// the cluster settle. At the end of a test every daemon is killed, and so is
// every task they started (tasks of the process runtime outlive their
// daemon). A failing test prints the tail of every node's log and keeps the
// logs on disk; the data dirs are always removed.
//
// Set SHOAL_TEST_BINARY to use a prebuilt shoal instead of building one, and
// SHOAL_TEST_KEEP=1 to keep data dirs and logs of passing tests too.
package testutil
