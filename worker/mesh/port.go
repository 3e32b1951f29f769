package mesh

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// port serves one published port: its listener, its current backends and
// those still draining.
type port struct {
	m         *Mesh
	log       *slog.Logger
	published uint16
	mode      Mode
	ln        *net.TCPListener
	srv       *http.Server // HTTP mode: net/http for what the fast path hands over
	fallback  *handoffListener

	// shutting: the port is retiring; HTTP client connections close once
	// idle.
	shutting atomic.Bool
	clients  map[*clientConn]struct{}

	// cur is what a new connection or request reads: swapped whole by
	// update, never changed in place.
	cur atomic.Pointer[portConfig]

	// ctx ends dials in flight when the port is closed.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	byID     map[string]*backend
	draining map[*backend]struct{}
	retiring bool
	done     chan struct{} // closed once a retiring port has drained

	wg sync.WaitGroup // accept loop, connection handlers, HTTP server
}

// portConfig is one generation of a port's settings and backends.
type portConfig struct {
	service  string
	proxy    ProxyProtocol
	backends []*backend
}

func newPort(m *Mesh, p Port, ln *net.TCPListener) *port {
	np := &port{
		m:         m,
		log:       m.log.With("port", p.Published, "service", p.Service),
		published: p.Published,
		mode:      p.Mode,
		ln:        ln,
		byID:      map[string]*backend{},
		draining:  map[*backend]struct{}{},
		clients:   map[*clientConn]struct{}{},
		done:      make(chan struct{}),
	}
	np.ctx, np.cancel = context.WithCancel(context.Background())
	np.update(p)
	return np
}

func (p *port) start() {
	p.wg.Add(1)
	if p.mode == ModeHTTP {
		p.fallback = newHandoffListener(p.ln.Addr())
		p.srv = p.newHTTPServer()
		p.wg.Add(1)
		go p.serveHTTP()
		go p.accept(p.handleHTTP)
		return
	}
	go p.accept(p.handleTCP)
}

// track registers an HTTP client connection, or reports false if the port
// is closing.
func (p *port) track(cc *clientConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.clients[cc] = struct{}{}
	return true
}

func (p *port) untrack(cc *clientConn) {
	p.mu.Lock()
	delete(p.clients, cc)
	p.mu.Unlock()
}

// closeClients closes the fast path's client connections: those waiting
// for a request only (idleOnly), or all.
func (p *port) closeClients(idleOnly bool) {
	p.mu.Lock()
	var cs []*clientConn
	for cc := range p.clients {
		if !idleOnly || cc.idle.Load() {
			cs = append(cs, cc)
		}
	}
	p.mu.Unlock()
	for _, cc := range cs {
		if idleOnly {
			// Only the client side: a request that began just now
			// fails as with any server closing an idle connection.
			cc.c.Close()
		} else {
			cc.Close()
		}
	}
}

func (p *port) service() string { return p.cur.Load().service }

// update swaps in the port's new backends: those with the same ID and
// address keep their state, the others leave and drain.
func (p *port) update(np Port) {
	p.mu.Lock()
	next := &portConfig{service: np.Service, proxy: np.Proxy, backends: make([]*backend, 0, len(np.Backends))}
	keep := make(map[string]*backend, len(np.Backends))
	for _, b := range np.Backends {
		if _, dup := keep[b.ID]; dup {
			continue
		}
		nb, ok := p.byID[b.ID]
		if ok && nb.addr == b.Addr {
			nb.drain.Store(int64(b.Drain))
		} else {
			nb = newBackend(b, p.mode, p.m.cfg.DialTimeout, p.finished)
		}
		keep[b.ID] = nb
		next.backends = append(next.backends, nb)
	}
	// Publish the new set before the old backends refuse new work, so a
	// connection that loses the race picks again from the new set.
	p.cur.Store(next)
	var gone []*backend
	for id, b := range p.byID {
		if keep[id] != b {
			p.draining[b] = struct{}{}
			gone = append(gone, b)
		}
	}
	p.byID = keep
	p.mu.Unlock()
	// remove may finish a backend at once, which takes p.mu in finished.
	for _, b := range gone {
		b.remove(true)
	}
}

// finished forgets a backend that has drained.
func (p *port) finished(b *backend) {
	p.mu.Lock()
	delete(p.draining, b)
	p.mu.Unlock()
}

// retire closes the listener at once and lets open connections drain up to
// their backends' Drain; onDone runs when they all ended.
func (p *port) retire(onDone func()) {
	p.mu.Lock()
	p.retiring = true
	p.mu.Unlock()
	var maxDrain time.Duration
	for _, b := range p.cur.Load().backends {
		maxDrain = max(maxDrain, time.Duration(b.drain.Load()))
	}
	p.update(Port{Published: p.published, Mode: p.mode, Service: p.service()})
	if p.mode == ModeHTTP {
		// Stop accepting, then close the idle client connections; a
		// busy one closes after its response (shutting is checked
		// before each request and sets Connection: close).
		p.shutting.Store(true)
		p.ln.Close()
		p.closeClients(true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			// Shutdown stops accepting, closes idle client connections
			// and waits for requests in flight; the backends' drain
			// timers end those that outlive their Drain.
			ctx, cancel := context.WithTimeout(p.ctx, maxDrain+time.Second)
			defer cancel()
			if err := p.srv.Shutdown(ctx); err != nil {
				p.srv.Close()
			}
		}()
	} else {
		p.ln.Close()
	}
	go func() {
		p.wg.Wait()
		p.cancel()
		p.finishAll()
		close(p.done)
		onDone()
	}()
}

// close ends the port at once: listener, connections and dials.
func (p *port) close() {
	p.mu.Lock()
	retiring := p.retiring
	var all []*backend
	for _, b := range p.byID {
		all = append(all, b)
	}
	for b := range p.draining {
		all = append(all, b)
	}
	p.mu.Unlock()
	p.shutting.Store(true)
	p.cancel()
	p.ln.Close()
	if p.srv != nil {
		p.srv.Close()
		p.closeClients(false)
	}
	for _, b := range all {
		b.remove(false)
	}
	if retiring {
		<-p.done
		return
	}
	p.wg.Wait()
	p.finishAll()
}

// finishAll releases what the port's backends still hold once no handler
// runs: the HTTP keep-alive connections in particular.
func (p *port) finishAll() {
	p.mu.Lock()
	var all []*backend
	for _, b := range p.byID {
		all = append(all, b)
	}
	for b := range p.draining {
		all = append(all, b)
	}
	p.mu.Unlock()
	for _, b := range all {
		b.remove(false)
		b.finish()
	}
}

func (p *port) stats() PortStats {
	cfg := p.cur.Load()
	ps := PortStats{Published: p.published, Mode: p.mode, Service: cfg.service}
	now := time.Now().UnixNano()
	add := func(b *backend, draining bool) {
		ps.Backends = append(ps.Backends, BackendStats{
			ID: b.id, Addr: b.addr, Open: int(b.open.Load()), Total: b.total.Load(),
			Suspect: b.isSuspect(now), Draining: draining,
		})
	}
	for _, b := range cfg.backends {
		add(b, false)
	}
	p.mu.Lock()
	for b := range p.draining {
		add(b, true)
	}
	p.mu.Unlock()
	return ps
}
