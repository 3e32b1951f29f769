// Package mesh is shoal's routing mesh: an in-process proxy on every node
// that accepts a service's published port (ingress mode) and balances
// connections over the service's ready tasks on any node of the cluster,
// keeping the client's address.
//
// # Why in user space
//
// Docker Swarm's ingress DNATs a published port to a task through IPVS; a
// task on another node then needs SNAT for the return path, so the task
// sees the ingress node as its client: the client's address is lost (Swarm's
// oldest open complaint). A proxy in the agent's process instead opens its
// own connection to the task and passes the client's address along, as a
// PROXY protocol header (TCP mode) or X-Forwarded-For (HTTP mode). It also
// learns at once when a dial fails, which a DNAT rule never does. The VIP
// for task-to-task traffic stays in nftables (not this package).
//
// # Updates
//
// The node's agent calls Mesh.Update with the full desired set of ingress
// ports whenever the ready tasks change; the managers push that within
// milliseconds, and a task leaves the set before it is sent its stop
// signal. Update opens listeners for new ports (an error per port that
// cannot be opened, such as one held by another process; the other ports
// keep working), closes those of removed ports, and swaps the backends of
// the others. A port's backends are one immutable slice behind an atomic
// pointer: a new connection reads it without a lock, Update replaces it
// whole. A backend keeps its identity (open connections, health) across
// updates by task ID and address.
//
// # Balancing
//
// Each new connection (TCP mode) or request (HTTP mode) goes to the
// backend with the fewest open, scanning from a random index so that ties
// are broken at random. The scan is O(backends) with atomic loads only;
// a service has tens of tasks, not thousands.
//
// # Draining
//
// A backend that leaves the set gets nothing new from the moment Update
// returns: acquiring a backend and removing it take the backend's lock, so
// a connection that picked it from the old set just before the swap either
// registered first (and is one of the draining connections) or picks again
// from the new set. Its open connections (HTTP: requests in flight) may go
// on for the backend's Drain (the task's stop grace period); then they are
// closed. A port removed by Update closes its listener at once and drains
// the same way; it may be published again at once. Close ends everything
// without waiting.
//
// # Passive health
//
// A dial that is refused or times out marks the backend suspect for
// Config.SuspectFor (2 s by default) and the connection tries another
// backend, each at most once; suspect backends are chosen only when no
// other is left. With every backend failing, the client's connection is
// closed (TCP) or answered 502 (HTTP); with no backend at all, a TCP
// connection is closed at once and an HTTP request gets a 503 naming the
// service.
//
// # TCP mode
//
// After the dial, an optional PROXY protocol header (v1 text or v2 binary,
// TCP4/TCP6; the "unknown"/LOCAL form if the addresses are not TCP) goes to
// the task first, then bytes are copied both ways with io.Copy between two
// *net.TCPConn, which Linux splices without copying through user space. A
// direction that reaches EOF half-closes the other side (CloseWrite); an
// error closes both connections, which ends the other direction too. Two
// goroutines per connection, both ended by either side closing or by the
// drain deadline.
//
// # HTTP mode
//
// net/http serves the port; httputil.ReverseProxy forwards each request
// with X-Forwarded-For (the client's own entries kept, the mesh's view of
// the client appended), X-Forwarded-Proto http and X-Forwarded-Host. The
// port itself is the proxy's RoundTripper: it picks the backend per
// request, so draining is exact even on a long keep-alive client
// connection. Each backend has its own keep-alive pool (an http.Transport
// with up to 1024 idle connections), closed when the backend has drained.
// A request whose dial failed is sent to another backend if it has no body
// to replay (nothing reached the failed backend, so this is safe for any
// method).
//
// # Costs measured
//
// bench/mesh_test.go (BenchmarkMesh): three nginx backends answering
// `200 ok`, wrk with 64 keep-alive connections, the mesh as its own process
// with GOMAXPROCS 2, nginx with 2 workers and keep-alive upstreams as the
// peer, on the project's 2-core VM while other work kept its load average
// near 9, two runs: mesh TCP mode 14,074 and 16,119 requests/s (0.58× and
// 0.75× nginx), HTTP mode 7,190 and 6,744 (0.30× and 0.31×), nginx 24,084
// and 21,520; p99 77/43, 68/58 and 62/85 ms. Below the 0.8× target in HTTP
// mode (and TCP mode in one run). A CPU profile of HTTP mode
// under that load spends 43% in system calls (one read and one write on
// each side per request, as nginx does) and most of the rest in net/http's
// per-request parsing, header copies and allocation; splice and a plain
// 16 KiB buffered copy measured the same in TCP mode for these small
// responses (11.8k–13.2k against 12.6k–12.8k requests/s).
package mesh
