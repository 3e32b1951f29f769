package netdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer runs a server on 127.0.0.1:0 with cfg's other fields and
// returns it once it listens; it stops at the end of the test.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	cfg.Addrs = []string{"127.0.0.1:0"}
	if len(cfg.Upstreams) == 0 {
		cfg.Upstreams = []string{"127.0.0.1:1"} // nothing listens: SERVFAIL
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return s, s.Addrs()[0]
}

func exchange(t testing.TB, network, server string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 10 * time.Second}
	resp, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s query %s: %v", network, m.Question[0].Name, err)
	}
	return resp
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func TestServerUDPAndTCP(t *testing.T) {
	s, addr := startServer(t, Config{})
	s.Swap(NewTable(testRecords()))
	for _, network := range []string{"udp", "tcp"} {
		resp := exchange(t, network, addr, query("Web.Words.", dns.TypeA))
		if got := rrStrings(resp.Answer); resp.Rcode != dns.RcodeSuccess || !resp.Authoritative ||
			!slices.Equal(got, []string{"Web.Words. A 10.0.0.2", "Web.Words. A 10.1.0.2"}) {
			t.Errorf("%s: rcode %s AA %v answer %q", network, dns.RcodeToString[resp.Rcode], resp.Authoritative, got)
		}
		resp = exchange(t, network, addr, query("example.com.", dns.TypeA))
		if resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: outside name with a dead upstream: %s, want SERVFAIL", network, dns.RcodeToString[resp.Rcode])
		}
	}
	// Lookup answers as for a querier on the given networks.
	m, err := s.Lookup(context.Background(), "web", dns.TypeA, []string{"back"})
	if err != nil {
		t.Fatal(err)
	}
	if got := rrStrings(m.Answer); !slices.Equal(got, []string{"web. A 10.1.0.2"}) {
		t.Errorf("Lookup on back: %q", got)
	}
	m, err = s.Lookup(context.Background(), "db", dns.TypeA, []string{"front"})
	if err != nil || m.Rcode != dns.RcodeNameError {
		t.Errorf("Lookup of db on front: %v %v, want NXDOMAIN", m, err)
	}
}

func TestServerTTLAndSwap(t *testing.T) {
	s, addr := startServer(t, Config{TTL: 0})
	resp := exchange(t, "udp", addr, query("web.", dns.TypeA))
	if resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("before the first Swap web is forwarded: %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	s.Swap(NewTable(testRecords()))
	resp = exchange(t, "udp", addr, query("web.", dns.TypeA))
	if len(resp.Answer) != 2 || resp.Answer[0].Header().Ttl != 0 {
		t.Fatalf("after Swap: %v, want 2 answers with TTL 0", resp.Answer)
	}
}

func TestServerDig(t *testing.T) {
	dig := needBinary(t, "dig")
	s, addr := startServer(t, Config{})
	s.Swap(NewTable(testRecords()))
	host, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"web.words", "A"}, []string{"10.0.0.2", "10.1.0.2"}},
		{[]string{"+tcp", "tasks.db", "A"}, []string{"10.1.0.20", "10.1.0.21"}},
		{[]string{"_http._tcp.web", "SRV"}, []string{"0 1 80 web.1.a.", "0 1 80 web.2.b."}},
		{[]string{"-x", "10.1.0.20"}, []string{"db.1.c."}},
	} {
		args := append([]string{"@" + host, "-p", port, "+short", "+time=5", "+tries=1"}, tc.args...)
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		got := strings.Fields(strings.TrimSpace(string(out)))
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines)
		if !slices.Equal(lines, tc.want) {
			t.Errorf("dig %v: %q (%q), want %q", tc.args, lines, got, tc.want)
		}
	}
	out, err := exec.Command(dig, "@"+host, "-p", port, "+time=5", "+tries=1", "empty", "A").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "status: NOERROR") || !strings.Contains(string(out), "ANSWER: 0") ||
		!strings.Contains(string(out), " aa ") {
		t.Errorf("dig empty: want authoritative NOERROR with no answer: %v\n%s", err, out)
	}
}

// TestServerBadInput sends what a DNS server must survive over real UDP:
// each case either gets the stated rcode or, for garbage and responses,
// nothing; the server keeps answering afterwards.
func TestServerBadInput(t *testing.T) {
	s, addr := startServer(t, Config{})
	s.Swap(NewTable(testRecords()))
	q := func(mod func(m *dns.Msg)) []byte {
		m := query("web.", dns.TypeA)
		m.Id = 777
		mod(m)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		pkt   []byte
		rcode int // -1: no answer
	}{
		{"short packet", []byte{1, 2, 3}, -1},
		{"header only", []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, dns.RcodeFormatError},
		{"no question", q(func(m *dns.Msg) { m.Question = nil }), dns.RcodeFormatError},
		{"two questions", q(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), dns.RcodeFormatError},
		{"CHAOS class", q(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused},
		{"opcode STATUS", q(func(m *dns.Msg) { m.Opcode = dns.OpcodeStatus }), dns.RcodeNotImplemented},
		{"opcode NOTIFY", q(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), dns.RcodeNotImplemented},
		{"AXFR", q(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }), dns.RcodeNotImplemented},
		{"a response", q(func(m *dns.Msg) { m.Response = true }), -1},
		{"truncated question", q(func(m *dns.Msg) {})[:16], dns.RcodeFormatError},
		{"query with trailing bytes", append(q(func(m *dns.Msg) {}), make([]byte, 3000)...), dns.RcodeSuccess},
		{"query bigger than 4096 bytes", append(q(func(m *dns.Msg) {}), make([]byte, 5000)...), dns.RcodeFormatError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.pkt); err != nil {
				t.Fatal(err)
			}
			// A no-answer case is followed by a good query on the same
			// socket: its answer must be the first thing read back.
			if tc.rcode == -1 {
				if _, err := c.Write(q(func(m *dns.Msg) { m.Id = 778 })); err != nil {
					t.Fatal(err)
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 4096)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			m := new(dns.Msg)
			if err := m.Unpack(buf[:n]); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if tc.rcode == -1 {
				if m.Id != 778 {
					t.Fatalf("answered the bad packet (id %d)", m.Id)
				}
				return
			}
			if !m.Response || m.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
		})
	}
}

// TestServerTruncatesForSmallClients: an answer bigger than 512 bytes is
// truncated (TC) for a client without EDNS0, whole over TCP and for an
// EDNS0 client with room.
func TestServerTruncatesForSmallClients(t *testing.T) {
	s, addr := startServer(t, Config{})
	r := testRecords()
	for i := range 60 {
		r.Services[1].Tasks = append(r.Services[1].Tasks, Task{Name: fmt.Sprintf("db.%d.task", i),
			Addrs: map[string]netip.Addr{"back": netip.AddrFrom4([4]byte{10, 1, 1, byte(i)})}})
	}
	s.Swap(NewTable(r))
	m := query("tasks.db.", dns.TypeA)
	resp := exchange(t, "udp", addr, m)
	if !resp.Truncated || len(resp.Answer) >= 62 {
		t.Fatalf("UDP 512: TC %v with %d answers, want TC and fewer", resp.Truncated, len(resp.Answer))
	}
	if resp := exchange(t, "tcp", addr, m); resp.Truncated || len(resp.Answer) != 62 {
		t.Fatalf("TCP: TC %v with %d answers, want 62", resp.Truncated, len(resp.Answer))
	}
	m.SetEdns0(4096, false)
	if resp := exchange(t, "udp", addr, m); resp.Truncated || len(resp.Answer) != 62 {
		t.Fatalf("UDP EDNS0 4096: TC %v with %d answers, want 62", resp.Truncated, len(resp.Answer))
	}
}

// TestServerTCPIdleClient: a client that connects and sends nothing does
// not keep the server from stopping or from serving others.
func TestServerTCPIdleClient(t *testing.T) {
	_, addr := startServer(t, Config{})
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	resp := exchange(t, "tcp", addr, query("web.", dns.TypeA))
	if resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s", dns.RcodeToString[resp.Rcode])
	}
	// The server closes the idle connection by itself (read timeout).
	_ = idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection still open after the server's timeout: %v", err)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Addrs: []string{"localhost:53"}},
		{Addrs: []string{"127.0.0.1:53"}, Upstreams: []string{"8.8.8.8"}},
		{Addrs: []string{"127.0.0.1:53"}, TTL: -time.Second},
	} {
		if _, err := NewServer(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("NewServer(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

// TestServerSwapWhileServing swaps tables through Server.Swap while real
// UDP and TCP clients query (run with -race).
func TestServerSwapWhileServing(t *testing.T) {
	s, addr := startServer(t, Config{TTL: 2 * time.Second})
	// One table built with the server's TTL, one rebuilt by Swap.
	other := testRecords()
	other.Services[0].Networks[0].VIP = netip.MustParseAddr("10.0.0.3")
	tables := []*Table{NewTableTTL(testRecords(), 2*time.Second), NewTable(other)}
	s.Swap(tables[0])
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				swapped <- n
				return
			default:
				s.Swap(tables[n%2])
				n++
			}
		}
	}()
	for i := range 200 {
		network := []string{"udp", "tcp"}[i%2]
		resp := exchange(t, network, addr, query("web.", dns.TypeA))
		got := rrStrings(resp.Answer)
		if len(got) != 2 || (got[0] != "web. A 10.0.0.2" && got[0] != "web. A 10.0.0.3") || resp.Answer[0].Header().Ttl != 2 {
			t.Fatalf("%s answer %q during swaps", network, got)
		}
	}
	close(stop)
	if n := <-swapped; n == 0 {
		t.Fatal("no swap happened while querying")
	}
}

// TestLimitListener: past its slots Accept waits until a connection
// closes; the waiting client is served then.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &limitListener{Listener: inner, slots: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan net.Conn, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	first := <-accepted
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("a second connection was accepted while the only slot was taken")
	default:
	}
	_ = first.Close()
	second := <-accepted // blocks until the slot is free: the test's timeout bounds it
	_ = second.Close()
	_ = first.Close() // a second Close frees nothing more
	// The loop's next Accept holds the slot while it waits; closing the
	// listener gives it back.
	_ = l.Close()
	<-done
	if len(l.slots) != 0 {
		t.Fatalf("%d slots held after both connections closed", len(l.slots))
	}
}
