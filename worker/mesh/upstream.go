package mesh

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// Keep-alive connections to a backend, as the fast HTTP path uses them.
const (
	// maxIdlePerBackend bounds a backend's idle connections: as many as
	// requests in flight at a peak, then some are closed.
	maxIdlePerBackend = 1024
	// upIdleTimeout: an idle connection older than this is closed rather
	// than reused (tasks commonly close theirs after 60-120 s).
	upIdleTimeout = 50 * time.Second
)

// upConn is one HTTP/1.1 connection to a backend.
type upConn struct {
	b    *backend
	c    *net.TCPConn
	br   *bufio.Reader
	bw   *bufio.Writer
	idle int64 // unix nanoseconds when it was put back
	used bool  // it carried a request before: a failure may be its close

	head   []byte // the last response head, reused
	fields []field
}

// upPool is a backend's idle connections, most recent last (reused first:
// the least likely to have been closed by the task).
type upPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

// get returns an idle connection, or nil.
func (p *upPool) get() *upConn {
	now := time.Now().UnixNano()
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now-uc.idle < int64(upIdleTimeout) {
			p.mu.Unlock()
			return uc
		}
		// The oldest are below it: close them all.
		stale := append([]*upConn{uc}, p.idle...)
		clear(p.idle)
		p.idle = p.idle[:0]
		p.mu.Unlock()
		for _, s := range stale {
			s.c.Close()
		}
		return nil
	}
	p.mu.Unlock()
	return nil
}

// put returns a connection whose last response was read whole.
func (p *upPool) put(uc *upConn) {
	uc.idle = time.Now().UnixNano()
	uc.used = true
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdlePerBackend {
		p.mu.Unlock()
		uc.c.Close()
		return
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
}

// close closes the idle connections and any put back later: the backend
// has finished.
func (p *upPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// dialUp opens a new connection to the backend.
func (b *backend) dialUp(ctx context.Context) (*upConn, error) {
	c, err := b.dialer.DialContext(ctx, "tcp", b.host)
	if err != nil {
		return nil, &dialError{err: err}
	}
	tc := c.(*net.TCPConn)
	return &upConn{b: b, c: tc, br: bufio.NewReaderSize(tc, 4096), bw: bufio.NewWriterSize(tc, 4096)}, nil
}
