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
// The port runs its own HTTP/1.1 server for the common case (fasthttp.go,
// h1.go): one goroutine per client connection, each request head read and
// parsed once into slices of a reused buffer, forwarded with the
// hop-by-hop headers (and those the Connection header names) removed,
// X-Forwarded-For (the client's own entries kept, the mesh's view of the
// client appended), X-Forwarded-Proto http and X-Forwarded-Host added, over
// a connection from the chosen backend's pool of keep-alive connections
// (upstream.go: up to 1024 idle, the most recent reused first, none older
// than 50 s). Bodies are streamed by their framing (Content-Length or
// chunked, trailers passed on); a response is copied as it comes (the
// client's buffer is flushed whenever the task's side has nothing more
// buffered), a response without a length runs to the task's close and
// the client connection closes after it. HEAD, 1xx, 204 and 304 answers
// carry no body. Requests are served one at a time per connection
// (pipelined ones wait their turn). Each request picks its backend, so
// draining is exact even on a long keep-alive client connection; while a
// request is in flight its client connection is registered with the
// backend, whose drain deadline closes both sides.
//
// A request whose dial failed goes to another backend if it has no body
// (nothing reached the failed backend, so this is safe for any method). A
// kept-alive connection that fails before any byte of the answer (the
// task closed it just as it was reused) is retried once on a new
// connection for bodyless GET, HEAD, OPTIONS, TRACE, PUT and DELETE only;
// anything else gets a 502. A task that answers before reading the whole
// body (413, say) and closes is still heard; one that answers without
// reading a large body and keeps the connection open stalls the request
// (the body is written before the answer is read, on one goroutine).
//
// Anything else goes to net/http: another HTTP version (1.0, HTTP/2 prior
// knowledge), Upgrade (WebSocket), Expect: 100-continue, CONNECT, absolute
// or asterisk targets, a Host missing or repeated, a transfer coding other
// than a lone chunked, Content-Length and chunked together, obs-folded or
// otherwise unusual header lines. The connection, with the bytes already
// read replayed first, is handed to an http.Server whose handler is
// httputil.ReverseProxy with the port as its RoundTripper (http.go), the
// same headers added, and serves it from then on. A client that goes away
// while the task prepares its answer is noticed when the answer is
// written, not before (net/http's background read is one of the costs the
// fast path drops).
//
// # Costs measured
//
// bench/mesh_test.go (BenchmarkMesh): three nginx backends answering
// `200 ok`, wrk with 64 keep-alive connections for 10 s, the mesh as its
// own process with GOMAXPROCS 2 (internal/meshproxy), nginx with 2 workers
// and keep-alive upstreams as the peer, each run measuring mesh TCP, mesh
// HTTP and nginx twice in turn and reporting the means. Command, run from
// the module root on the project's 2-core VM while other work shared it:
//
//	go test -run '^$' -bench '^BenchmarkMesh$' -benchtime 1x -count 2 ./bench/
//
// Quiet machine (load average 1.0–4.6), old and new code one after the
// other (the old from `git archive 685e187`), two runs each:
//
//	before (httputil.ReverseProxy per request): HTTP 11,454 and 12,162 requests/s = 0.41× and 0.42× nginx, p99 14.7/14.1 ms; TCP 0.91×, 0.93×
//	after (fast path):                           HTTP 24,651 and 23,449 requests/s = 0.92× and 0.93× nginx, p99 7.8/7.3 ms;  TCP 1.00×, 1.01×
//
// Loaded machine (other work running), after:
//
//	load 68.3/54.5 → 27.2/45.8 (1/5 min): HTTP 0.73×, 0.67×; TCP 0.83×, 0.92×
//	load 28.7/33.4 → 23.9/30.8:           HTTP 0.70×, 0.78×; TCP 0.72×, 0.79×
//	load  3.2/19.7 →  4.6/14.6:           HTTP 0.67×, 0.88×; TCP 0.83×, 1.00×
//
// and before, loaded: HTTP 0.38×, 0.43× (load 13.3/29.9 → 7.5/21.6), 0.30×,
// 0.31× (load near 9); TCP 0.58×–1.33×. So HTTP mode went from about 0.4×
// to 0.92× nginx on a quiet machine and to 0.67–0.88× on a loaded one;
// TCP mode (unchanged) is at 0.91–1.01× quiet and 0.72–1.33× loaded,
// where its own runs differ by more than its gap to the target. Single wrk
// rounds of the same target differ by up to 2× under load (nginx 11,073
// and 30,778 requests/s in the same hour): compare the ratios of one run.
//
// Under load neither mode reaches 0.8× in every run. What limits it there
// is not pinned down. A CPU profile of the fast path under
// wrk (meshproxy -cpuprofile) spends 71% in system calls, 15% reading
// heads (mostly the read system call under bufio) and little else: no
// allocation to speak of per request, so GOGC does not matter. strace -c
// over 3 s of wrk -c8 counts per request 2.0 write and 2.3 read calls
// (0.3 of them EAGAIN) and 0.08 epoll_pwait for the mesh, against 2.0
// writev, 2.0 recvfrom, 1.0 getsockopt and 0.5 epoll_wait for nginx:
// about as many calls. What the mesh adds is its runtime around those
// calls (goroutine parking through the netpoller, futex wakeups between
// threads, and 0.6 nanosleep per request from spinning threads under
// strace), which a loaded 2-core machine makes dearer; nginx's two
// single-threaded workers have none of it. (Likely, not shown: the
// profile cannot separate it from the calls themselves.)
//
// TCP mode: io.Copy between the two *net.TCPConn splices both ways; an
// earlier measurement found splice and a plain 16 KiB buffered copy the same for these small responses
// (11.8k–13.2k against 12.6k–12.8k requests/s); one goroutine accepts,
// which is not on the path of a keep-alive load. SO_REUSEPORT listeners
// and GC settings were not tried for TCP mode: it allocates per
// connection, not per request, and the load's 64 connections are opened
// once.
package mesh
