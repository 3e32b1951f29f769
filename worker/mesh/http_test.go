package mesh

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// httpBackend is an HTTP task stand-in that records what each request
// carried.
type httpBackend struct {
	*httptest.Server
	name string

	mu       sync.Mutex
	requests []*http.Request
	// hold, if set, blocks each request until it is closed.
	hold chan struct{}
}

func newHTTPBackend(t *testing.T, name string) *httpBackend {
	t.Helper()
	hb := &httpBackend{name: name}
	hb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hb.mu.Lock()
		hb.requests = append(hb.requests, r)
		hold := hb.hold
		hb.mu.Unlock()
		if hold != nil {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, hb.name)
	}))
	t.Cleanup(hb.Close)
	return hb
}

func (hb *httpBackend) backend(drain time.Duration) Backend {
	return Backend{ID: hb.name, Addr: hb.Listener.Addr().(*net.TCPAddr).AddrPort(), Drain: drain}
}

func (hb *httpBackend) count() int {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return len(hb.requests)
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, port uint16, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/path?q=1", port), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET body: %v", err)
	}
	return resp.StatusCode, string(body)
}

func TestHTTPForwardedHeadersAndPerRequestBalancing(t *testing.T) {
	checkGoroutines(t)
	m := newTestMesh(t)
	backs := []*httpBackend{newHTTPBackend(t, "a"), newHTTPBackend(t, "b"), newHTTPBackend(t, "c")}
	pub := freePort(t)
	update(t, m, Port{Published: pub, Mode: ModeHTTP, Service: "web", Backends: []Backend{
		backs[0].backend(0), backs[1].backend(0), backs[2].backend(0),
	}})
	// One client keep-alive connection: every request may go elsewhere.
	c := newClient(t)
	for i := range 90 {
		code, body := get(t, c, pub, http.Header{"X-Forwarded-For": {"203.0.113.7"}})
		if code != 200 || len(body) != 1 {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	for _, hb := range backs {
		if hb.count() == 0 {
			t.Errorf("backend %s got none of 90 requests over one client connection", hb.name)
		}
	}
	r := backs[0].requests[0]
	if got := r.Header.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client's own entry then 127.0.0.1", got)
	}
	if got := r.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto %q, want http", got)
	}
	if got, want := r.Header.Get("X-Forwarded-Host"), fmt.Sprintf("127.0.0.1:%d", pub); got != want || r.Host != want {
		t.Errorf("X-Forwarded-Host %q, Host %q, want both %q", got, r.Host, want)
	}
	if r.URL.String() != "/path?q=1" {
		t.Errorf("path %q, want /path?q=1", r.URL)
	}
	c.CloseIdleConnections()
	m.Close()
}

func TestHTTPNoBackendIs503AndRefusedIsRetried(t *testing.T) {
	m := newTestMesh(t)
	pub := freePort(t)
	update(t, m, Port{Published: pub, Mode: ModeHTTP, Service: "web"})
	c := newClient(t)
	code, body := get(t, c, pub, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"web"`) {
		t.Errorf("no backend: %d %q, want 503 naming the service", code, body)
	}

	good := newHTTPBackend(t, "good")
	update(t, m, Port{Published: pub, Mode: ModeHTTP, Service: "web", Backends: []Backend{
		{ID: "bad", Addr: refusedAddr(t)}, good.backend(0),
	}})
	for i := range 30 {
		if code, body := get(t, c, pub, nil); code != 200 || body != "good" {
			t.Fatalf("request %d with a refusing backend: %d %q", i, code, body)
		}
	}
	if st := m.Stats()[0]; !st.Backends[0].Suspect {
		t.Errorf("refusing backend not suspect: %+v", st)
	}

	update(t, m, Port{Published: pub, Mode: ModeHTTP, Service: "web", Backends: []Backend{{ID: "bad", Addr: refusedAddr(t)}}})
	if code, _ := get(t, c, pub, nil); code != http.StatusBadGateway {
		t.Errorf("every backend refusing: %d, want 502", code)
	}
}

func TestHTTPDrainCancelsRequestsAfterDrain(t *testing.T) {
	checkGoroutines(t)
	m := newTestMesh(t)
	slow, next := newHTTPBackend(t, "slow"), newHTTPBackend(t, "next")
	slow.hold = make(chan struct{})
	pub := freePort(t)
	update(t, m, Port{Published: pub, Mode: ModeHTTP, Service: "web", Backends: []Backend{slow.backend(time.Second)}})
	c := newClient(t)
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", pub))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	update(t, m, Port{Published: pub, Mode: ModeHTTP, Service: "web", Backends: []Backend{next.backend(0)}})
	// New requests go to the new backend at once, over a new client
	// connection since the first is busy.
	if code, body := get(t, newClient(t), pub, nil); code != 200 || body != "next" {
		t.Errorf("request after the update: %d %q, want next", code, body)
	}
	// The request in flight on the removed backend is cut after Drain.
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("request held past its backend's drain completed without error")
	}
	waitFor(t, "the slow backend to finish draining", func() bool {
		st := m.Stats()
		return len(st) == 1 && len(st[0].Backends) == 1
	})
	c.CloseIdleConnections()
	m.Close()
}

func TestCloseEndsEverything(t *testing.T) {
	checkGoroutines(t)
	tcpB, httpB := newEchoBackend(t, false), newHTTPBackend(t, "h")
	m := newTestMesh(t)
	tp, hp := freePort(t), freePort(t)
	update(t, m,
		Port{Published: tp, Service: "t", Backends: []Backend{tcpB.backend("t", time.Hour)}},
		Port{Published: hp, Mode: ModeHTTP, Service: "h", Backends: []Backend{httpB.backend(time.Hour)}},
	)
	c := dialMesh(t, tp)
	if err := roundTrip(c, "x\n"); err != nil {
		t.Fatal(err)
	}
	hc := newClient(t)
	if code, _ := get(t, hc, hp, nil); code != 200 {
		t.Fatalf("http: %d", code)
	}
	// The TCP port is retired with its connection draining: Close ends
	// it too.
	update(t, m, Port{Published: hp, Mode: ModeHTTP, Service: "h", Backends: []Backend{httpB.backend(time.Hour)}})
	if err := roundTrip(c, "draining\n"); err != nil {
		t.Fatal(err)
	}
	m.Close()
	expectClosed(t, c)
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hp)); err == nil {
		t.Errorf("http port still listening after Close")
	}
	if errs := m.Update([]Port{{Published: tp}}); len(errs) != 1 {
		t.Errorf("Update after Close: %v, want ErrClosed", errs)
	}
	hc.CloseIdleConnections()
}
