package mesh

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// backend is one task behind one port. Its open connections (TCP mode) or
// requests in flight (HTTP mode) are registered with it, so that leaving
// the set can drain them and then close what remains.
type backend struct {
	id   string
	addr netip.AddrPort
	host string // addr as "ip:port", for dialing

	drain        atomic.Int64 // time.Duration; a later update may change it
	open         atomic.Int64
	total        atomic.Uint64
	suspectUntil atomic.Int64 // unix nanoseconds

	// transport is the keep-alive pool of an HTTP-mode backend; its
	// connections are tracked in tconns so that finish closes them all,
	// idle or not.
	transport *http.Transport
	dialer    *net.Dialer
	// pool holds the fast HTTP path's idle connections to the task.
	pool upPool

	mu       sync.Mutex
	removed  bool // left the set: acquire fails from then on
	finished bool // removed and nothing open: its resources are released
	conns    map[io.Closer]struct{}
	tconns   map[net.Conn]struct{}
	timer    *time.Timer
	onFinish func(*backend)
}

func newBackend(b Backend, mode Mode, dialTimeout time.Duration, onFinish func(*backend)) *backend {
	nb := &backend{
		id:       b.ID,
		addr:     b.Addr,
		host:     b.Addr.String(),
		dialer:   &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		conns:    map[io.Closer]struct{}{},
		onFinish: onFinish,
	}
	nb.drain.Store(int64(b.Drain))
	if mode == ModeHTTP {
		nb.tconns = map[net.Conn]struct{}{}
		nb.transport = &http.Transport{
			DialContext: nb.dialHTTP,
			// One pool per backend: the whole pool may be idle
			// connections to this one task.
			MaxIdleConns:          0,
			MaxIdleConnsPerHost:   1024,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
			ExpectContinueTimeout: time.Second,
		}
	}
	return nb
}

// acquire registers c as open on b, or reports false if b left the set.
func (b *backend) acquire(c io.Closer) bool {
	b.mu.Lock()
	if b.removed {
		b.mu.Unlock()
		return false
	}
	b.conns[c] = struct{}{}
	b.mu.Unlock()
	b.open.Add(1)
	b.total.Add(1)
	return true
}

// release unregisters c; the last one of a removed backend finishes it.
func (b *backend) release(c io.Closer) {
	b.open.Add(-1)
	b.mu.Lock()
	delete(b.conns, c)
	last := b.removed && len(b.conns) == 0
	b.mu.Unlock()
	if last {
		b.finish()
	}
}

// remove takes b out of service: nothing new is acquired from now on, what
// is open may last the drain period (drain false: none), then is closed.
func (b *backend) remove(drain bool) {
	b.mu.Lock()
	if b.removed {
		b.mu.Unlock()
		if !drain {
			b.expire()
		}
		return
	}
	b.removed = true
	empty := len(b.conns) == 0
	d := time.Duration(b.drain.Load())
	if !empty && drain && d > 0 {
		b.timer = time.AfterFunc(d, b.expire)
	}
	b.mu.Unlock()
	switch {
	case empty:
		b.finish()
	case !drain || d <= 0:
		b.expire()
	}
}

// expire closes whatever is still open on a removed backend.
func (b *backend) expire() {
	b.mu.Lock()
	open := make([]io.Closer, 0, len(b.conns))
	for c := range b.conns {
		open = append(open, c)
	}
	b.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// finish releases a removed backend's resources once nothing is open on it:
// its drain timer and its HTTP connections.
func (b *backend) finish() {
	b.mu.Lock()
	if b.finished {
		b.mu.Unlock()
		return
	}
	b.finished = true
	if b.timer != nil {
		b.timer.Stop()
	}
	tconns := make([]net.Conn, 0, len(b.tconns))
	for c := range b.tconns {
		tconns = append(tconns, c)
	}
	b.mu.Unlock()
	if b.transport != nil {
		b.transport.CloseIdleConnections()
		b.pool.close()
	}
	for _, c := range tconns {
		c.Close()
	}
	if b.onFinish != nil {
		b.onFinish(b)
	}
}

// suspect marks b as recently unreachable until now+d.
func (b *backend) suspect(d time.Duration) {
	b.suspectUntil.Store(time.Now().Add(d).UnixNano())
}

func (b *backend) isSuspect(now int64) bool {
	return b.suspectUntil.Load() > now
}

// dialHTTP dials for the backend's HTTP transport, tracking the connection
// so that finish closes it even if it sits in the idle pool.
func (b *backend) dialHTTP(ctx context.Context, network, _ string) (net.Conn, error) {
	c, err := b.dialer.DialContext(ctx, network, b.host)
	if err != nil {
		return nil, &dialError{err: err}
	}
	tc := &trackedConn{Conn: c, b: b}
	b.mu.Lock()
	if b.finished {
		b.mu.Unlock()
		c.Close()
		return nil, &dialError{err: net.ErrClosed}
	}
	b.tconns[tc] = struct{}{}
	b.mu.Unlock()
	return tc, nil
}

// trackedConn leaves its backend's set when closed.
type trackedConn struct {
	net.Conn
	b    *backend
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.b.mu.Lock()
		delete(c.b.tconns, c)
		c.b.mu.Unlock()
	})
	return c.Conn.Close()
}

// dialError marks a failure to connect to a backend: nothing was sent, so
// the request may go to another backend.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial backend: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// pick chooses the backend for a new connection or request: the one with
// the fewest open, ties broken at random, skipping those in tried and,
// while any other is left, the suspect ones.
func pick(bs []*backend, tried []*backend) *backend {
	n := len(bs)
	if n == 0 {
		return nil
	}
	if n == 1 {
		if len(tried) > 0 {
			return nil
		}
		return bs[0]
	}
	now := time.Now().UnixNano()
	start := rand.IntN(n)
	var best, bestSuspect *backend
	var min, minSuspect int64
	for i := range n {
		b := bs[(start+i)%n]
		if isTried(tried, b) {
			continue
		}
		open := b.open.Load()
		if b.isSuspect(now) {
			if bestSuspect == nil || open < minSuspect {
				bestSuspect, minSuspect = b, open
			}
			continue
		}
		if best == nil || open < min {
			best, min = b, open
		}
	}
	if best != nil {
		return best
	}
	return bestSuspect
}

func isTried(tried []*backend, b *backend) bool {
	for _, t := range tried {
		if t == b {
			return true
		}
	}
	return false
}
