package netdns

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// captureConn is the UDP socket of the fuzz target: it keeps what the
// server sends.
type captureConn struct{ sent [][]byte }

func (c *captureConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	c.sent = append(c.sent, append([]byte(nil), b...))
	return len(b), nil
}
func (c *captureConn) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }

// servfail stands for the upstreams in the fuzz target, synchronously.
type servfail struct{}

func (servfail) Name() string { return "servfail" }
func (servfail) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) {
	_ = w.WriteMsg(errorReply(r, dns.RcodeServerFailure))
}

// FuzzServe feeds arbitrary packets to the UDP path (the same function the
// socket loops call): it never panics, and answers with nothing or with
// one well-formed response carrying the query's ID.
func FuzzServe(f *testing.F) {
	for _, m := range []*dns.Msg{
		query("web.", dns.TypeA),
		query("WEB.words.", dns.TypeANY),
		query("tasks.db.", dns.TypeA),
		query("_http._tcp.web.", dns.TypeSRV),
		query("2.0.0.10.in-addr.arpa.", dns.TypePTR),
		query("example.com.", dns.TypeAAAA),
		query("empty.", dns.TypeMX),
	} {
		m.SetEdns0(4096, false)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1})

	s, err := NewServer(Config{Addrs: []string{"127.0.0.1:0"}, Upstreams: []string{"127.0.0.1:1"}})
	if err != nil {
		f.Fatal(err)
	}
	s.Swap(NewTable(testRecords()))
	s.udp = &cluster{table: &s.table, next: servfail{}}
	src := netip.MustParseAddrPort("192.0.2.1:5000")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		conn := &captureConn{}
		s.servePacket(context.Background(), &udpWriter{conn: conn, src: src}, pkt)
		if len(conn.sent) > 1 {
			t.Fatalf("%d responses to one packet", len(conn.sent))
		}
		if len(conn.sent) == 0 {
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(conn.sent[0]); err != nil {
			t.Fatalf("response does not parse: %v", err)
		}
		if len(pkt) < 2 || m.Id != binary.BigEndian.Uint16(pkt) || !m.Response {
			t.Fatalf("response id %d response %v to a query with id bytes %x", m.Id, m.Response, pkt[:min(2, len(pkt))])
		}
		if len(conn.sent[0]) > maxUDPPayload {
			t.Fatalf("response of %d bytes over UDP", len(conn.sent[0]))
		}
	})
}
