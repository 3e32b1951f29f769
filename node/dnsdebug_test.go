package node

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"shoal/netdns"
	shoalpb "shoal/proto"
)

// testDNSServer is a netdns server (not listening: Lookup needs no socket)
// whose table has web (VIP 10.0.0.2 on network front, one ready task) and
// whose upstream is a real DNS server on loopback that answers every name
// with 192.0.2.1, not authoritatively.
func testDNSServer(t *testing.T) *netdns.Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.IPv4(192, 0, 2, 1),
		})
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	upstream.NotifyStartedFunc = func() { close(started) }
	go func() { _ = upstream.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = upstream.Shutdown() })

	srv, err := netdns.NewServer(netdns.Config{Addrs: []string{"127.0.0.1:0"}, TTL: netdns.DefaultTTL, Upstreams: []string{pc.LocalAddr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Swap(netdns.NewTable(netdns.Records{Services: []netdns.Service{{
		ID:       "w1",
		Names:    []string{"web"},
		Networks: []netdns.Attachment{{Network: "front", VIP: netip.MustParseAddr("10.0.0.2")}},
		Tasks:    []netdns.Task{{Name: "web.1.a", Addrs: map[string]netip.Addr{"front": netip.MustParseAddr("10.0.0.10")}}},
	}}}))
	return srv
}

func localDNSDebug(srv *netdns.Server) *dnsDebug {
	return &dnsDebug{nodeID: "n1abc", hostname: "host1", hasDNS: true, server: func() *netdns.Server { return srv }}
}

// wantCode fails unless err is a gRPC status of code whose message names
// every part.
func wantCode(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("error %q does not name %q", st.Message(), p)
		}
	}
}

func TestDNSLookupAnswers(t *testing.T) {
	d := localDNSDebug(testDNSServer(t))
	ctx := t.Context()
	cases := []struct {
		name      string
		req       *shoalpb.DNSLookupRequest
		rcode     string
		answers   []string
		ttl       uint32
		forwarded bool
	}{
		{"VIP", &shoalpb.DNSLookupRequest{Name: "web"}, "NOERROR", []string{"web.\t1\tIN\tA\t10.0.0.2"}, 1, false},
		{"type lower case", &shoalpb.DNSLookupRequest{Name: "tasks.web", Type: "a"}, "NOERROR", []string{"tasks.web.\t1\tIN\tA\t10.0.0.10"}, 1, false},
		{"NODATA", &shoalpb.DNSLookupRequest{Name: "web", Type: "AAAA"}, "NOERROR", nil, 0, false},
		{"PTR of an address", &shoalpb.DNSLookupRequest{Name: "10.0.0.10", Type: "PTR"}, "NOERROR", []string{"10.0.0.10.in-addr.arpa.\t1\tIN\tPTR\tweb.1.a."}, 1, false},
		{"on the service's network", &shoalpb.DNSLookupRequest{Name: "web", Network: "front"}, "NOERROR", []string{"web.\t1\tIN\tA\t10.0.0.2"}, 1, false},
		{"on another network", &shoalpb.DNSLookupRequest{Name: "web", Network: "back"}, "NXDOMAIN", nil, 0, false},
		{"outside name", &shoalpb.DNSLookupRequest{Name: "outside.example"}, "NOERROR", []string{"outside.example.\t300\tIN\tA\t192.0.2.1"}, 300, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := d.Lookup(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetNodeId() != "n1abc" || resp.GetHostname() != "host1" {
				t.Errorf("node = %s (%s), want host1 (n1abc)", resp.GetHostname(), resp.GetNodeId())
			}
			if resp.GetRcode() != tc.rcode || resp.GetTtlSeconds() != tc.ttl || resp.GetForwarded() != tc.forwarded {
				t.Errorf("rcode %s ttl %d forwarded %v, want %s %d %v", resp.GetRcode(), resp.GetTtlSeconds(), resp.GetForwarded(), tc.rcode, tc.ttl, tc.forwarded)
			}
			if !slices.Equal(resp.GetAnswers(), tc.answers) {
				t.Errorf("answers = %q, want %q", resp.GetAnswers(), tc.answers)
			}
		})
	}
}

func TestDNSLookupRefusesBadInput(t *testing.T) {
	d := localDNSDebug(testDNSServer(t))
	_, err := d.Lookup(t.Context(), &shoalpb.DNSLookupRequest{})
	wantCode(t, err, codes.InvalidArgument, "name", "tasks.web")
	_, err = d.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Type: "BOGUS"})
	wantCode(t, err, codes.InvalidArgument, "--type", "BOGUS", "SRV")
	_, err = d.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "a..b"})
	wantCode(t, err, codes.InvalidArgument, "a..b", "not a domain name")
}

func TestDNSLookupWithoutClusterDNS(t *testing.T) {
	d := &dnsDebug{nodeID: "n1abc", hostname: "host1", server: func() *netdns.Server { return nil }}
	_, err := d.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web"})
	wantCode(t, err, codes.FailedPrecondition, "host1", "runs no cluster DNS (process runtime)")

	d.hasDNS = true
	_, err = d.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web"})
	wantCode(t, err, codes.Unavailable, "host1", "no DNS server running yet")
}

func TestDNSLookupOtherNodeOnAWorker(t *testing.T) {
	d := localDNSDebug(testDNSServer(t))
	_, err := d.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Node: "n2"})
	wantCode(t, err, codes.FailedPrecondition, "--node n2", "worker", "ask a manager")
	// Itself, by ID prefix or hostname, it answers.
	for _, self := range []string{"n1", "n1abc", "host1"} {
		if resp, err := d.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Node: self}); err != nil || resp.GetRcode() != "NOERROR" {
			t.Errorf("--node %s: %v, %v", self, resp, err)
		}
	}
}

func TestFindNode(t *testing.T) {
	node := func(id, host string) *shoalpb.Node {
		return &shoalpb.Node{Id: id, Description: &shoalpb.NodeDescription{Hostname: host}}
	}
	nodes := []*shoalpb.Node{node("abc1", "alpha"), node("abc2", "beta"), node("xyz", "beta"), node("abc", "gamma")}
	for ref, want := range map[string]string{"abc1": "abc1", "abc": "abc", "xy": "xyz", "alpha": "abc1", "gamma": "abc"} {
		got, err := findNode(nodes, ref)
		if err != nil || got.GetId() != want {
			t.Errorf("findNode(%q) = %v, %v; want %s", ref, got.GetId(), err, want)
		}
	}
	_, err := findNode(nodes, "ab")
	wantCode(t, err, codes.InvalidArgument, "--node ab", "ambiguous", "abc1", "abc2")
	_, err = findNode(nodes, "beta")
	wantCode(t, err, codes.InvalidArgument, "--node beta", "ambiguous", "abc2", "xyz")
	_, err = findNode(nodes, "nope")
	wantCode(t, err, codes.NotFound, "--node nope", "shoal node ls")
}

// A manager relays a question about another node to that node's NodeDNS
// over a real gRPC connection, and the answer names the other node.
func TestDNSLookupRelaysToAnotherNode(t *testing.T) {
	other := &dnsDebug{nodeID: "n2def", hostname: "host2", hasDNS: true, server: func() *netdns.Server { return testDNSServer(t) }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	shoalpb.RegisterNodeDNSServer(gs, other)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)

	mgr := localDNSDebug(nil)
	mgr.hasDNS = false // the manager's own DNS must not be what answers
	mgr.nodes = func() []*shoalpb.Node {
		return []*shoalpb.Node{
			{Id: "n1abc", Description: &shoalpb.NodeDescription{Hostname: "host1"}},
			{Id: "n2def", Description: &shoalpb.NodeDescription{Hostname: "host2"},
				Status: &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_READY, Addr: ln.Addr().String()}},
			{Id: "n3ghi", Description: &shoalpb.NodeDescription{Hostname: "host3"},
				Status: &shoalpb.NodeStatus{State: shoalpb.NodeState_NODE_STATE_DOWN, Addr: "127.0.0.1:1"}},
		}
	}
	mgr.dial = func(ctx context.Context, addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	resp, err := mgr.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Node: "host2"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetNodeId() != "n2def" || resp.GetRcode() != "NOERROR" || !slices.Equal(resp.GetAnswers(), []string{"web.\t1\tIN\tA\t10.0.0.2"}) {
		t.Errorf("relayed answer = %v", resp)
	}
	// The network goes along: web is not on back.
	resp, err = mgr.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Node: "n2", Network: "back"})
	if err != nil || resp.GetRcode() != "NXDOMAIN" || resp.GetNodeId() != "n2def" {
		t.Errorf("relayed with --network back: %v, %v; want NXDOMAIN from n2def", resp, err)
	}
	_, err = mgr.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Node: "n3"})
	wantCode(t, err, codes.Unavailable, "host3", "not ready")
	_, err = mgr.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Node: "n1"})
	wantCode(t, err, codes.FailedPrecondition, "host1", "process runtime")
	_, err = mgr.Lookup(t.Context(), &shoalpb.DNSLookupRequest{Name: "web", Node: "n9"})
	wantCode(t, err, codes.NotFound, "--node n9", "shoal node ls")
}
