package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// errNoBackend: the service has no ready task (or none answered and the
// request could not be retried).
var errNoBackend = errors.New("no ready task")

// newHTTPServer builds the port's net/http front for the connections the
// fast path (fasthttp.go) hands over: a reverse proxy whose transport is
// the port itself, so that every request picks its backend.
func (p *port) newHTTPServer() *http.Server {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Keep what earlier proxies said, then add the client as
			// the mesh saw it (the last X-Forwarded-For entry is the
			// one a task can trust).
			if xff, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = xff
			}
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host // replaced by the backend's address in RoundTrip
		},
		Transport:    p,
		BufferPool:   bufferPool{},
		ErrorHandler: p.proxyError,
	}
	return &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
}

func (p *port) serveHTTP() {
	defer p.wg.Done()
	if err := p.srv.Serve(p.fallback); err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.log.Error("http front stopped", "err", err)
	}
}

// RoundTrip sends one request to a backend chosen for it. A backend that
// cannot be dialed is suspect and the request goes to another, each at most
// once, as long as the request has no body to replay (nothing was sent
// yet, so even a POST without a body is safe to resend).
func (p *port) RoundTrip(req *http.Request) (*http.Response, error) {
	cfg := p.cur.Load()
	var triedBuf [4]*backend
	tried := triedBuf[:0]
	var lastErr error
	for {
		b := pick(cfg.backends, tried)
		if b == nil {
			if next := p.cur.Load(); next != cfg {
				cfg = next
				continue
			}
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, errNoBackend
		}
		tried = append(tried, b)
		ctx, cancel := context.WithCancel(req.Context())
		rc := &requestCancel{cancel: cancel}
		if !b.acquire(rc) {
			cancel()
			continue
		}
		out := req.WithContext(ctx)
		u := *req.URL
		u.Host = b.host
		out.URL = &u
		resp, err := b.transport.RoundTrip(out)
		if err == nil {
			resp.Body = &releaseBody{ReadCloser: resp.Body, b: b, rc: rc}
			return resp, nil
		}
		b.release(rc)
		cancel()
		var de *dialError
		if !errors.As(err, &de) {
			return nil, err
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		b.suspect(p.m.cfg.SuspectFor)
		p.log.Warn("backend unreachable; trying another", "task", b.id, "addr", b.host, "err", err)
		lastErr = err
		if req.Body != nil && req.Body != http.NoBody {
			return nil, err
		}
	}
}

// proxyError answers a request no backend served: 503 when the service
// has no ready task, 502 when its tasks failed.
func (p *port) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	service := p.service()
	if errors.Is(err, errNoBackend) {
		http.Error(w, fmt.Sprintf("shoal: service %q has no ready task for port %d", service, p.published), http.StatusServiceUnavailable)
		return
	}
	if r.Context().Err() == nil {
		p.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	http.Error(w, fmt.Sprintf("shoal: service %q: no task answered for port %d", service, p.published), http.StatusBadGateway)
}

// requestCancel is a request in flight, as registered with its backend:
// closing it cancels the request (the backend's drain ran out).
type requestCancel struct{ cancel context.CancelFunc }

func (r *requestCancel) Close() error { r.cancel(); return nil }

// releaseBody ends the request's registration with its backend when the
// proxy is done with the response body.
type releaseBody struct {
	io.ReadCloser
	b    *backend
	rc   *requestCancel
	once sync.Once
}

func (r *releaseBody) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(func() {
		r.b.release(r.rc)
		r.rc.cancel()
	})
	return err
}

// Write lets a 101 Switching Protocols response body (a WebSocket, say)
// be used both ways, as httputil.ReverseProxy expects.
func (r *releaseBody) Write(b []byte) (int, error) {
	w, ok := r.ReadCloser.(io.Writer)
	if !ok {
		return 0, errors.New("response body is not writable")
	}
	return w.Write(b)
}

// bufferPool reuses the reverse proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// handoffListener is the net/http server's listener: it yields the client
// connections the fast path hands over.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// handoff passes c to the server; it reports false (c closed) if the
// server is closing.
func (l *handoffListener) handoff(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
