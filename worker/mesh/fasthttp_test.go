package mesh

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// wireBackend is an HTTP task stand-in for the fast path's framing cases:
// /echo answers the request body chunked, /len/N answers N bytes with a
// Content-Length, /status/N answers status N, /stream writes until the
// client goes away. It records the client address of every request.
type wireBackend struct {
	*httptest.Server
	mu      sync.Mutex
	remotes map[string]int
	headers []http.Header
	aborted chan struct{} // a /stream request whose client went away
}

func newWireBackend(t *testing.T) *wireBackend {
	t.Helper()
	wb := &wireBackend{remotes: map[string]int{}, aborted: make(chan struct{}, 16)}
	wb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wb.mu.Lock()
		wb.remotes[r.RemoteAddr]++
		wb.headers = append(wb.headers, r.Header.Clone())
		wb.mu.Unlock()
		switch {
		case r.URL.Path == "/echo":
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			w.Header().Set("X-Body-Length", strconv.Itoa(len(body)))
			half := len(body) / 2
			w.Write(body[:half])
			w.(http.Flusher).Flush() // forces a chunked answer
			w.Write(body[half:])
		case strings.HasPrefix(r.URL.Path, "/len/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/len/"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write(bytes.Repeat([]byte("x"), n))
		case strings.HasPrefix(r.URL.Path, "/status/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
			w.WriteHeader(n)
		case r.URL.Path == "/stream":
			chunk := bytes.Repeat([]byte("s"), 32*1024)
			for {
				if _, err := w.Write(chunk); err != nil {
					wb.aborted <- struct{}{}
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(wb.Close)
	return wb
}

func (wb *wireBackend) backend(id string) Backend {
	return Backend{ID: id, Addr: wb.Listener.Addr().(*net.TCPAddr).AddrPort()}
}

func (wb *wireBackend) conns() int {
	wb.mu.Lock()
	defer wb.mu.Unlock()
	return len(wb.remotes)
}

func httpPort(t *testing.T, m *Mesh, bs ...Backend) uint16 {
	t.Helper()
	pub := freePort(t)
	update(t, m, Port{Published: pub, Mode: ModeHTTP, Service: "web", Backends: bs})
	return pub
}

func TestHTTPKeepAliveReusesBackendConnections(t *testing.T) {
	checkGoroutines(t)
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	c := newClient(t)
	for i := range 50 {
		if code, body := get(t, c, pub, nil); code != 200 || body != "" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := wb.conns(); n != 1 {
		t.Errorf("50 sequential requests used %d backend connections, want 1 kept alive", n)
	}
	c.CloseIdleConnections()
	m.Close()
}

// rawConn sends raw bytes to the mesh and reads responses with net/http's
// parser.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, port uint16) *rawConn {
	t.Helper()
	c := dialMesh(t, port)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) read(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(rc.r, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

func TestHTTPPipelinedRequestsAnsweredInOrder(t *testing.T) {
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	rc := dialRaw(t, pub)
	io.WriteString(rc, "GET /len/3 HTTP/1.1\r\nHost: x\r\n\r\nGET /len/5 HTTP/1.1\r\nHost: x\r\n\r\nGET /len/1 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"xxx", "xxxxx", "x"} {
		if resp, body := rc.read(t, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("pipelined answer %d %q, want %q", resp.StatusCode, body, want)
		}
	}
}

func TestHTTPChunkedRequestAndResponseBodies(t *testing.T) {
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	rc := dialRaw(t, pub)
	io.WriteString(rc, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n")
	resp, body := rc.read(t, "POST")
	if resp.StatusCode != 200 || body != "hello, world" {
		t.Fatalf("chunked echo: %d %q", resp.StatusCode, body)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("answer framing %v, want the task's chunked body passed on chunked", resp.TransferEncoding)
	}
	// The connection is still in step: a second request works.
	io.WriteString(rc, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if resp, body := rc.read(t, "POST"); resp.StatusCode != 200 || body != "abc" {
		t.Fatalf("second request: %d %q", resp.StatusCode, body)
	}
}

func TestHTTPHeadAndBodylessStatuses(t *testing.T) {
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	rc := dialRaw(t, pub)
	io.WriteString(rc, "HEAD /len/100 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := rc.read(t, "HEAD")
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != 100 {
		t.Fatalf("HEAD: %d %q length %d, want 200, no body, length 100", resp.StatusCode, body, resp.ContentLength)
	}
	for _, code := range []int{204, 304} {
		fmt.Fprintf(rc, "GET /status/%d HTTP/1.1\r\nHost: x\r\n\r\n", code)
		if resp, body := rc.read(t, "GET"); resp.StatusCode != code || body != "" {
			t.Fatalf("status %d: got %d %q", code, resp.StatusCode, body)
		}
	}
	// Still in step after answers without bodies.
	io.WriteString(rc, "GET /len/2 HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := rc.read(t, "GET"); resp.StatusCode != 200 || body != "xx" {
		t.Fatalf("after HEAD/204/304: %d %q", resp.StatusCode, body)
	}
}

func TestHTTPLargeBodiesBothWays(t *testing.T) {
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	c := newClient(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 512*1024) // 8 MiB
	resp, err := c.Post(fmt.Sprintf("http://127.0.0.1:%d/echo", pub), "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("8 MiB echo: %v, %d bytes back, equal %v", err, len(got), bytes.Equal(got, payload))
	}
	resp, err = c.Get(fmt.Sprintf("http://127.0.0.1:%d/len/%d", pub, 5<<20))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 5<<20 {
		t.Fatalf("5 MiB answer: %d bytes, %v", n, err)
	}
	c.CloseIdleConnections()
}

func TestHTTPClientClosingMidResponseReleasesBackend(t *testing.T) {
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	rc := dialRaw(t, pub)
	io.WriteString(rc, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.ReadFull(rc.r, make([]byte, 64*1024)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	select {
	case <-wb.aborted:
	case <-time.After(10 * time.Second):
		t.Fatal("the task's streaming answer did not end after the client went away")
	}
	waitFor(t, "the request to leave its backend", func() bool {
		return m.Stats()[0].Backends[0].Open == 0
	})
	// The port serves on.
	if code, _ := get(t, newClient(t), pub, nil); code != 200 {
		t.Errorf("after a client went away: %d", code)
	}
}

// closingBackend answers each request on a connection, then closes that
// connection without saying so (as a task does whose keep-alive timeout
// ran out just as the mesh reuses the connection).
type closingBackend struct {
	ln       net.Listener
	accepted sync.WaitGroup
	mu       sync.Mutex
	count    int
}

func newClosingBackend(t *testing.T) *closingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &closingBackend{ln: ln}
	cb.accepted.Add(1)
	go func() {
		defer cb.accepted.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cb.mu.Lock()
			cb.count++
			cb.mu.Unlock()
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); cb.accepted.Wait() })
	return cb
}

func TestHTTPStaleKeepAliveRetriedForIdempotentOnly(t *testing.T) {
	m := newTestMesh(t)
	cb := newClosingBackend(t)
	pub := httpPort(t, m, Backend{ID: "a", Addr: cb.ln.Addr().(*net.TCPAddr).AddrPort()})
	rc := dialRaw(t, pub)
	for i := range 3 {
		io.WriteString(rc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := rc.read(t, "GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET %d over a connection the task closed: %d %q, want a retried 200", i, resp.StatusCode, body)
		}
	}
	// A POST is not resent: the task might have acted on it.
	io.WriteString(rc, "POST / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := rc.read(t, "POST"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST over a connection the task closed: %d, want 502", resp.StatusCode)
	}
}

func TestHTTPUnusualRequestsGoToNetHTTP(t *testing.T) {
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	// HTTP/1.0 and an Expect: 100-continue request are served by the
	// net/http path, with the same forwarded headers.
	rc := dialRaw(t, pub)
	io.WriteString(rc, "GET /len/4 HTTP/1.0\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n")
	if resp, body := rc.read(t, "GET"); resp.StatusCode != 200 || body != "xxxx" {
		t.Fatalf("HTTP/1.0: %d %q", resp.StatusCode, body)
	}
	rc = dialRaw(t, pub)
	io.WriteString(rc, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
	resp, body := rc.read(t, "POST")
	for resp.StatusCode == 100 {
		resp, body = rc.read(t, "POST")
	}
	if resp.StatusCode != 200 || body != "hi" {
		t.Fatalf("Expect: 100-continue: %d %q", resp.StatusCode, body)
	}
	wb.mu.Lock()
	first := wb.headers[0]
	wb.mu.Unlock()
	if got := first.Get("X-Forwarded-For"); got != "192.0.2.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For through net/http %q", got)
	}
}

func TestHTTPFastPathHeaders(t *testing.T) {
	m := newTestMesh(t)
	wb := newWireBackend(t)
	pub := httpPort(t, m, wb.backend("a"))
	rc := dialRaw(t, pub)
	io.WriteString(rc, "GET /len/1 HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\n"+
		"X-Forwarded-Proto: https\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n")
	rc.read(t, "GET")
	wb.mu.Lock()
	h := wb.headers[0]
	wb.mu.Unlock()
	checks := map[string]string{
		"X-Forwarded-For":   "192.0.2.1, 192.0.2.2, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "h.example",
		"X-Secret":          "",
		"Keep-Alive":        "",
		"X-Kept":            "yes",
	}
	for k, want := range checks {
		if got := strings.Join(h.Values(k), ", "); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}
