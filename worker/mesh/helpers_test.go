package mesh

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines records the goroutine count and, at cleanup, waits until
// it is back to it: whatever the test started must have ended.
func checkGoroutines(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Fatalf("%d goroutines left, %d before the test:\n%s", runtime.NumGoroutine(), base, buf[:n])
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func newTestMesh(t *testing.T) *Mesh {
	t.Helper()
	m := New(Config{
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		ListenHost:  "127.0.0.1",
		DialTimeout: 2 * time.Second,
		SuspectFor:  time.Minute,
	})
	t.Cleanup(func() { m.Close() })
	return m
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// refusedAddr is an address where connections are refused.
func refusedAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
}

// echoBackend is a task stand-in: it reads an optional PROXY header, then
// writes back what it reads.
type echoBackend struct {
	ln       net.Listener
	addr     netip.AddrPort
	accepted atomic.Int64
	proxy    bool // expect a PROXY header first

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	headers []proxyInfo
	wg      sync.WaitGroup
}

func newEchoBackend(t *testing.T, proxy bool) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoBackend{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort(), proxy: proxy, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.serve()
	t.Cleanup(e.close)
	return e
}

func (e *echoBackend) serve() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.accepted.Add(1)
		e.mu.Lock()
		e.conns[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer func() {
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
				c.Close()
			}()
			r := bufio.NewReader(c)
			if e.proxy {
				h, err := readProxyHeader(r)
				if err != nil {
					return
				}
				e.mu.Lock()
				e.headers = append(e.headers, h)
				e.mu.Unlock()
			}
			io.Copy(c, r)
		}()
	}
}

func (e *echoBackend) close() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *echoBackend) backend(id string, drain time.Duration) Backend {
	return Backend{ID: id, Addr: e.addr, Drain: drain}
}

// dialMesh connects to the mesh's port on 127.0.0.1.
func dialMesh(t *testing.T, port uint16) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatalf("dial mesh port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back.
func roundTrip(c net.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// echoOnce opens a connection to the mesh, echoes one message, closes it.
func echoOnce(t *testing.T, port uint16) error {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, "hello\n")
}

// expectClosed reads until the connection ends; it fails if data arrives
// or the connection is still open after the polling deadline.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 16))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open")
	}
	if err == nil {
		t.Fatalf("read %d bytes from a connection that should be closed", n)
	}
}

// proxyInfo is a parsed PROXY protocol header.
type proxyInfo struct {
	version  int
	command  string // "PROXY", "LOCAL" (v2), "UNKNOWN" (v1)
	src, dst netip.AddrPort
}

// readProxyHeader parses a v1 or v2 PROXY protocol header: the test's own
// parser, so that it checks the mesh against the specification rather than
// against itself.
func readProxyHeader(r *bufio.Reader) (proxyInfo, error) {
	sig := []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}
	peek, err := r.Peek(12)
	if err != nil {
		return proxyInfo{}, err
	}
	if bytes.Equal(peek, sig) {
		return readProxyV2(r)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return proxyInfo{}, err
	}
	if !strings.HasSuffix(line, "\r\n") || len(line) > 107 {
		return proxyInfo{}, fmt.Errorf("v1 header %q: bad terminator or length", line)
	}
	f := strings.Fields(strings.TrimSuffix(line, "\r\n"))
	if len(f) < 2 || f[0] != "PROXY" {
		return proxyInfo{}, fmt.Errorf("v1 header %q: no PROXY keyword", line)
	}
	if f[1] == "UNKNOWN" {
		return proxyInfo{version: 1, command: "UNKNOWN"}, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return proxyInfo{}, fmt.Errorf("v1 header %q: want 6 fields with TCP4/TCP6", line)
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sp, err3 := strconv.ParseUint(f[4], 10, 16)
	dp, err4 := strconv.ParseUint(f[5], 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return proxyInfo{}, fmt.Errorf("v1 header %q: %w", line, err)
	}
	if (f[1] == "TCP4") != src.Is4() || src.Is4() != dst.Is4() {
		return proxyInfo{}, fmt.Errorf("v1 header %q: family does not match the addresses", line)
	}
	return proxyInfo{version: 1, command: "PROXY", src: netip.AddrPortFrom(src, uint16(sp)), dst: netip.AddrPortFrom(dst, uint16(dp))}, nil
}

func readProxyV2(r *bufio.Reader) (proxyInfo, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return proxyInfo{}, err
	}
	if fixed[12]>>4 != 2 {
		return proxyInfo{}, fmt.Errorf("v2 header: version %d", fixed[12]>>4)
	}
	length := binary.BigEndian.Uint16(fixed[14:])
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return proxyInfo{}, err
	}
	info := proxyInfo{version: 2}
	switch fixed[12] & 0x0F {
	case 0:
		info.command = "LOCAL"
		return info, nil
	case 1:
		info.command = "PROXY"
	default:
		return proxyInfo{}, fmt.Errorf("v2 header: command %d", fixed[12]&0x0F)
	}
	switch fixed[13] {
	case 0x11:
		if length < 12 {
			return proxyInfo{}, fmt.Errorf("v2 header: AF_INET with length %d", length)
		}
		info.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
		info.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
	case 0x21:
		if length < 36 {
			return proxyInfo{}, fmt.Errorf("v2 header: AF_INET6 with length %d", length)
		}
		info.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:]))
		info.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:]))
	default:
		return proxyInfo{}, fmt.Errorf("v2 header: family/transport 0x%02x", fixed[13])
	}
	return info, nil
}
