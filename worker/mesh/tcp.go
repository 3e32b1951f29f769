package mesh

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// accept accepts the port's connections until its listener closes, each
// served by handle on a goroutine of its own.
func (p *port) accept(handle func(*net.TCPConn)) {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little
			// rather than spin, as net/http's server does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		p.wg.Add(1)
		go handle(c)
	}
}

// proxyConn is one proxied connection: what a backend's drain deadline or
// the port's close shuts.
type proxyConn struct {
	client *net.TCPConn
	mu     sync.Mutex
	up     *net.TCPConn
	closed bool
}

// setUpstream attaches the dialed backend connection, or reports false if
// the connection was closed meanwhile.
func (pc *proxyConn) setUpstream(up *net.TCPConn) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return false
	}
	pc.up = up
	return true
}

func (pc *proxyConn) Close() error {
	pc.mu.Lock()
	pc.closed = true
	up := pc.up
	pc.mu.Unlock()
	pc.client.Close()
	if up != nil {
		up.Close()
	}
	return nil
}

// handleTCP proxies one client connection to one backend.
func (p *port) handleTCP(client *net.TCPConn) {
	defer p.wg.Done()
	cfg := p.cur.Load()
	pc := &proxyConn{client: client}
	b, up := p.dialAny(cfg, pc)
	if up == nil {
		client.Close()
		return
	}
	defer b.release(pc)
	if cfg.proxy != ProxyNone {
		hdr := proxyHeader(cfg.proxy, client.RemoteAddr(), client.LocalAddr())
		if _, err := up.Write(hdr); err != nil {
			pc.Close()
			return
		}
	}
	pipe(pc, client, up)
}

// dialAny connects to a backend of cfg, trying each at most once; a
// backend that fails is suspect for a while. It returns nil if none
// answered (or there is none).
func (p *port) dialAny(cfg *portConfig, pc *proxyConn) (*backend, *net.TCPConn) {
	var triedBuf [4]*backend
	tried := triedBuf[:0]
	for {
		b := pick(cfg.backends, tried)
		if b == nil {
			// A newer set may have replaced cfg while this connection
			// was dialing a backend that left: try that one.
			if next := p.cur.Load(); next != cfg {
				cfg = next
				continue
			}
			if len(cfg.backends) == 0 {
				p.log.Debug("connection closed: the service has no ready task")
			} else {
				p.log.Warn("connection closed: no backend answered", "tried", len(tried))
			}
			return nil, nil
		}
		tried = append(tried, b)
		if !b.acquire(pc) {
			continue
		}
		c, err := b.dialer.DialContext(p.ctx, "tcp", b.host)
		if err != nil {
			b.release(pc)
			if p.ctx.Err() != nil {
				return nil, nil
			}
			b.suspect(p.m.cfg.SuspectFor)
			p.log.Warn("backend unreachable; trying another", "task", b.id, "addr", b.host, "err", err)
			continue
		}
		up := c.(*net.TCPConn)
		if !pc.setUpstream(up) {
			up.Close()
			b.release(pc)
			return nil, nil
		}
		return b, up
	}
}

// pipe copies both ways until both directions ended. A side that finishes
// sending (EOF) is half-closed on the other side, so a request/response
// protocol that shuts its write side still gets its answer; an error in
// either direction closes both connections, which ends the other copy too.
// io.Copy between two *net.TCPConn uses splice(2) on Linux: the bytes do
// not go through user space.
func pipe(pc *proxyConn, client, up *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(pc, up, client)
	}()
	copyHalf(pc, client, up)
	<-done
	pc.Close()
}

func copyHalf(pc *proxyConn, dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		pc.Close()
		return
	}
	if err := dst.CloseWrite(); err != nil {
		pc.Close()
	}
}
