package netdns

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkServePacket is the UDP hot path without the socket: decode a
// query for a service name, answer it from the table, encode the answer.
func BenchmarkServePacket(b *testing.B) {
	s, err := NewServer(Config{Addrs: []string{"127.0.0.1:0"}, Upstreams: []string{"127.0.0.1:1"}})
	if err != nil {
		b.Fatal(err)
	}
	s.Swap(NewTable(testRecords()))
	pkt, err := query("web.", dns.TypeA).Pack()
	if err != nil {
		b.Fatal(err)
	}
	w := &udpWriter{conn: &discardConn{}, src: netip.MustParseAddrPort("192.0.2.1:5000")}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s.servePacket(ctx, w, pkt)
	}
}

type discardConn struct{ captureConn }

func (*discardConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) { return len(b), nil }
