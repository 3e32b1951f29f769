package netdns

import (
	"context"
	"fmt"
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

// BenchmarkNewTable is the agent's rebuild on each change: 1,000 services
// of 10 ready tasks on one network, each with a named port.
func BenchmarkNewTable(b *testing.B) {
	var r Records
	for i := range 1000 {
		svc := Service{
			ID: fmt.Sprint(i), Names: []string{fmt.Sprintf("svc%d", i), fmt.Sprintf("svc%d.stack", i)},
			Ports:    []Port{{Name: "http", Protocol: "tcp", Port: 80}},
			Networks: []Attachment{{Network: "n1", VIP: netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 2)})}},
		}
		for t := range 10 {
			svc.Tasks = append(svc.Tasks, Task{Name: fmt.Sprintf("svc%d.%d.t%d", i, t+1, t),
				Addrs: map[string]netip.Addr{"n1": netip.AddrFrom4([4]byte{10, 1 + byte(i/250), byte(i % 250), byte(t + 2)})}})
		}
		r.Services = append(r.Services, svc)
	}
	b.ReportAllocs()
	for b.Loop() {
		NewTable(r)
	}
}
