package mesh

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func update(t *testing.T, m *Mesh, ports ...Port) {
	t.Helper()
	if errs := m.Update(ports); len(errs) > 0 {
		t.Fatalf("Update: %v", errs)
	}
}

func TestTCPBalancesAndRemovedBackendGetsNothing(t *testing.T) {
	checkGoroutines(t)
	m := newTestMesh(t)
	b1, b2, b3 := newEchoBackend(t, false), newEchoBackend(t, false), newEchoBackend(t, false)
	pub := freePort(t)
	update(t, m, Port{Published: pub, Protocol: "tcp", Service: "web", Backends: []Backend{
		b1.backend("t1", 0), b2.backend("t2", 0), b3.backend("t3", 0),
	}})
	for i := range 300 {
		if err := echoOnce(t, pub); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	for i, b := range []*echoBackend{b1, b2, b3} {
		if n := b.accepted.Load(); n == 0 {
			t.Errorf("backend %d got none of 300 connections", i+1)
		}
	}
	update(t, m, Port{Published: pub, Protocol: "tcp", Service: "web", Backends: []Backend{
		b1.backend("t1", 0), b2.backend("t2", 0),
	}})
	before := b3.accepted.Load()
	for i := range 100 {
		if err := echoOnce(t, pub); err != nil {
			t.Fatalf("connection %d after removal: %v", i, err)
		}
	}
	if n := b3.accepted.Load() - before; n != 0 {
		t.Errorf("removed backend got %d connections after Update returned", n)
	}
	m.Close()
}

func TestTCPDrainKeepsOpenConnectionUntilDrainThenCloses(t *testing.T) {
	checkGoroutines(t)
	m := newTestMesh(t)
	old, next := newEchoBackend(t, false), newEchoBackend(t, false)
	pub := freePort(t)
	const drain = 2 * time.Second
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{old.backend("old", drain)}})
	c := dialMesh(t, pub)
	if err := roundTrip(c, "before\n"); err != nil {
		t.Fatal(err)
	}
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{next.backend("new", drain)}})
	// The open connection still works while it drains...
	if err := roundTrip(c, "during drain\n"); err != nil {
		t.Fatalf("open connection to a draining backend: %v", err)
	}
	st := m.Stats()
	if len(st) != 1 || len(st[0].Backends) != 2 || !st[0].Backends[1].Draining || st[0].Backends[1].Open != 1 {
		t.Errorf("stats during drain: %+v", st)
	}
	// ...new ones go to the new backend...
	if err := echoOnce(t, pub); err != nil {
		t.Fatal(err)
	}
	if old.accepted.Load() != 1 || next.accepted.Load() != 1 {
		t.Errorf("accepted old=%d new=%d, want 1 and 1", old.accepted.Load(), next.accepted.Load())
	}
	// ...and it is closed once the drain period is over.
	expectClosed(t, c)
	waitFor(t, "the drained backend to leave the stats", func() bool {
		st := m.Stats()
		return len(st) == 1 && len(st[0].Backends) == 1
	})
	m.Close()
}

func TestTCPDrainEndsEarlyWhenConnectionsClose(t *testing.T) {
	m := newTestMesh(t)
	old := newEchoBackend(t, false)
	pub := freePort(t)
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{old.backend("old", time.Hour)}})
	c := dialMesh(t, pub)
	if err := roundTrip(c, "x\n"); err != nil {
		t.Fatal(err)
	}
	update(t, m, Port{Published: pub, Service: "web"})
	c.Close()
	waitFor(t, "the backend to finish draining", func() bool {
		st := m.Stats()
		return len(st) == 1 && len(st[0].Backends) == 0
	})
}

func TestTCPRefusingBackendIsRetriedAndSuspect(t *testing.T) {
	m := newTestMesh(t)
	good := newEchoBackend(t, false)
	bad := refusedAddr(t)
	pub := freePort(t)
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{
		{ID: "bad", Addr: bad}, good.backend("good", 0),
	}})
	for i := range 50 {
		if err := echoOnce(t, pub); err != nil {
			t.Fatalf("connection %d with one refusing backend: %v", i, err)
		}
	}
	st := m.Stats()[0]
	for _, b := range st.Backends {
		if b.ID == "bad" && (!b.Suspect || b.Total != 1) {
			t.Errorf("refusing backend: suspect=%v tried %d times, want suspect after 1", b.Suspect, b.Total)
		}
	}

	// With every backend refusing, the client's connection is closed.
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{{ID: "bad", Addr: bad}, {ID: "bad2", Addr: refusedAddr(t)}}})
	expectClosed(t, dialMesh(t, pub))
}

func TestTCPNoBackendsClosesAtOnce(t *testing.T) {
	m := newTestMesh(t)
	pub := freePort(t)
	update(t, m, Port{Published: pub, Service: "web"})
	expectClosed(t, dialMesh(t, pub))
}

func TestPortInUseIsReportedAndOtherPortsServe(t *testing.T) {
	m := newTestMesh(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := uint16(taken.Addr().(*net.TCPAddr).Port)
	b := newEchoBackend(t, false)
	free := freePort(t)
	errs := m.Update([]Port{
		{Published: takenPort, Service: "a", Backends: []Backend{b.backend("t1", 0)}},
		{Published: free, Service: "b", Backends: []Backend{b.backend("t2", 0)}},
		{Published: 53, Protocol: "udp", Service: "dns"},
	})
	if len(errs) != 2 {
		t.Fatalf("errors %v, want one for the taken port and one for udp", errs)
	}
	err = errs[takenPort]
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), strconv.Itoa(int(takenPort))+"/tcp is already in use") {
		t.Errorf("taken port error %q: want ErrPortInUse naming the port", err)
	}
	if err := errs[53]; !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "53/udp") {
		t.Errorf("udp error %q: want ErrUnsupported naming 53/udp", err)
	}
	if err := echoOnce(t, free); err != nil {
		t.Errorf("other port: %v", err)
	}
}

func TestProxyProtocolCarriesClientAddress(t *testing.T) {
	for _, v := range []ProxyProtocol{ProxyV1, ProxyV2} {
		t.Run(v.String(), func(t *testing.T) {
			m := newTestMesh(t)
			b := newEchoBackend(t, true)
			pub := freePort(t)
			update(t, m, Port{Published: pub, Proxy: v, Service: "web", Backends: []Backend{b.backend("t1", 0)}})
			c := dialMesh(t, pub)
			if err := roundTrip(c, "after the header\n"); err != nil {
				t.Fatal(err)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.headers) != 1 {
				t.Fatalf("%d headers, want 1", len(b.headers))
			}
			h := b.headers[0]
			wantSrc, wantDst := c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
			if h.version != int(v) || h.command != "PROXY" || h.src != wantSrc || h.dst != wantDst {
				t.Errorf("header %+v, want v%d PROXY src %v dst %v", h, v, wantSrc, wantDst)
			}
		})
	}
}

func TestProxyHeaderForms(t *testing.T) {
	v6 := func(s string) *net.TCPAddr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	src, dst := v6("[2001:db8::1]:40000"), v6("[2001:db8::2]:443")
	for _, tc := range []struct {
		v        ProxyProtocol
		src, dst net.Addr
		want     proxyInfo
	}{
		{ProxyV1, src, dst, proxyInfo{1, "PROXY", src.AddrPort(), dst.AddrPort()}},
		{ProxyV2, src, dst, proxyInfo{2, "PROXY", src.AddrPort(), dst.AddrPort()}},
		{ProxyV1, &net.UnixAddr{Name: "x"}, dst, proxyInfo{version: 1, command: "UNKNOWN"}},
		{ProxyV2, &net.UnixAddr{Name: "x"}, dst, proxyInfo{version: 2, command: "LOCAL"}},
		// A v4 client seen through a dual-stack socket is unmapped.
		{ProxyV1, v6("[::ffff:10.0.0.1]:5"), v6("[::ffff:10.0.0.2]:80"), proxyInfo{1, "PROXY", netip.MustParseAddrPort("10.0.0.1:5"), netip.MustParseAddrPort("10.0.0.2:80")}},
	} {
		hdr := proxyHeader(tc.v, tc.src, tc.dst)
		got, err := readProxyHeader(bufio.NewReader(strings.NewReader(string(hdr) + "rest")))
		if err != nil || got != tc.want {
			t.Errorf("header %q parsed as %+v, %v; want %+v", hdr, got, err, tc.want)
		}
	}
}

func TestPortRemovedClosesListenerAndDrains(t *testing.T) {
	checkGoroutines(t)
	m := newTestMesh(t)
	b := newEchoBackend(t, false)
	pub := freePort(t)
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{b.backend("t1", time.Hour)}})
	c := dialMesh(t, pub)
	if err := roundTrip(c, "x\n"); err != nil {
		t.Fatal(err)
	}
	update(t, m)
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(pub)))); err == nil {
		t.Errorf("removed port still accepts connections")
	}
	if err := roundTrip(c, "still draining\n"); err != nil {
		t.Errorf("open connection on a removed port: %v", err)
	}
	// The port can be published again at once, while the old one drains.
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{b.backend("t1", 0)}})
	if err := echoOnce(t, pub); err != nil {
		t.Errorf("port published again: %v", err)
	}
	// Close ends the draining connection too.
	m.Close()
	expectClosed(t, c)
}

func TestTCPHalfClose(t *testing.T) {
	m := newTestMesh(t)
	b := newEchoBackend(t, false)
	pub := freePort(t)
	update(t, m, Port{Published: pub, Service: "web", Backends: []Backend{b.backend("t1", 0)}})
	c := dialMesh(t, pub)
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	// The echo backend answers after our EOF reached it, then closes.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	got, err := r.ReadString('\n')
	if got != "request" || err != io.EOF {
		t.Errorf("after half-close read %q, %v; want the echo then EOF", got, err)
	}
}

func TestUpdateWhileServingIsRaceFree(t *testing.T) {
	checkGoroutines(t)
	m := newTestMesh(t)
	backs := []*echoBackend{newEchoBackend(t, false), newEchoBackend(t, false), newEchoBackend(t, false)}
	pub := freePort(t)
	set := func(i int) []Backend {
		var out []Backend
		for j, b := range backs {
			if j != i%3 {
				out = append(out, b.backend(strconv.Itoa(j), 50*time.Millisecond))
			}
		}
		return out
	}
	update(t, m, Port{Published: pub, Service: "web", Backends: set(0)})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Errors are expected while a backend's drain cuts a
				// connection; the race detector is the judge here.
				echoOnce(t, pub)
			}
		}()
	}
	for i := range 200 {
		mode := ModeTCP
		if i%50 == 49 {
			mode = ModeHTTP
		}
		m.Update([]Port{{Published: pub, Mode: mode, Service: "web", Backends: set(i)}})
		m.Stats()
	}
	close(stop)
	wg.Wait()
	m.Close()
}
