package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"shoal/netdns"
	shoalpb "shoal/proto"
	"shoal/worker/lb"
	"shoal/worker/mesh"
	"shoal/worker/network"
)

func web() *shoalpb.ServiceEndpoints {
	return &shoalpb.ServiceEndpoints{ServiceId: "s1", Name: "shop_Web", Stack: "shop", Vip: "10.201.0.7", Ports: []*shoalpb.PortConfig{
		{Name: "http", Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS,
			Mesh: shoalpb.MeshMode_MESH_MODE_HTTP, ProxyProtocol: shoalpb.ProxyProtocol_PROXY_PROTOCOL_NONE},
		{Protocol: "tcp", TargetPort: 9000, PublishedPort: 9000, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST},
	}, Networks: []*shoalpb.NetworkAttachmentConfig{{Target: "default"}}}
}

func endpoint(id, addr string, drainMs int64) *shoalpb.EndpointTask {
	return &shoalpb.EndpointTask{TaskId: id, ServiceId: "s1", Name: "shop_web.1." + id, Address: addr, NodeId: "n1", DrainMs: drainMs}
}

func TestSnapshotViews(t *testing.T) {
	tab := New()
	tab.Apply(&shoalpb.EndpointsMessage{Complete: true, DnsTtlMs: 2000, Services: []*shoalpb.ServiceEndpoints{web()},
		Tasks: []*shoalpb.EndpointTask{endpoint("t2", "10.200.1.3", 0), endpoint("t1", "10.200.0.2", 3000),
			{TaskId: "orphan", ServiceId: "gone", Address: "10.200.0.9"}}})
	snap := tab.Snapshot()
	if snap.TTL != 2*time.Second || len(snap.Services) != 1 || len(snap.Services[0].Tasks) != 2 || snap.Services[0].Tasks[0].TaskId != "t1" {
		t.Fatalf("snapshot %+v: want one service with t1, t2 and the TTL", snap)
	}

	dns := snap.DNS().Services[0]
	if !slices.Equal(dns.Names, []string{"shop_web", "web.shop"}) || dns.DNSRR ||
		dns.Networks[0].VIP != netip.MustParseAddr("10.201.0.7") || len(dns.Tasks) != 2 ||
		dns.Tasks[0].Addrs["default"] != netip.MustParseAddr("10.200.0.2") || dns.Ports[0] != (netdns.Port{Name: "http", Protocol: "tcp", Port: 80}) {
		t.Fatalf("DNS view %+v", dns)
	}
	vips := snap.VIPs()
	if len(vips) != 1 || !slices.Equal(vips[0].Backends, []netip.Addr{netip.MustParseAddr("10.200.0.2"), netip.MustParseAddr("10.200.1.3")}) {
		t.Fatalf("VIP view %+v", vips)
	}
	ports := snap.Ingress()
	if len(ports) != 1 || ports[0].Published != 8080 || ports[0].Mode != mesh.ModeHTTP || ports[0].Service != "shop_Web" ||
		ports[0].Backends[0] != (mesh.Backend{ID: "t1", Addr: netip.MustParseAddrPort("10.200.0.2:80"), Drain: 3 * time.Second}) ||
		ports[0].Backends[1].Drain != defaultDrain {
		t.Fatalf("mesh view %+v: only the ingress port, target port, drain from the spec or the default", ports)
	}

	// Changes, then dnsrr: no VIP rule, no VIP in DNS.
	rr := web()
	rr.Mode, rr.Vip = shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR, ""
	tab.Apply(&shoalpb.EndpointsMessage{Services: []*shoalpb.ServiceEndpoints{rr}, RemoveTasks: []string{"t2"}, DnsTtlMs: -1})
	snap = tab.Snapshot()
	if snap.TTL != 0 || len(snap.Services[0].Tasks) != 1 || len(snap.VIPs()) != 0 || !snap.DNS().Services[0].DNSRR || snap.DNS().Services[0].Networks[0].VIP.IsValid() {
		t.Fatalf("after changes: %+v", snap)
	}
	tab.Apply(&shoalpb.EndpointsMessage{RemoveServices: []string{"s1"}})
	if n := len(tab.Snapshot().Services); n != 0 {
		t.Fatalf("%d services after removal", n)
	}
}

// Run serves nothing before the complete set, then every change once.
func TestRunFeedsSinks(t *testing.T) {
	tab := New()
	got := make(chan string, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tab.Run(ctx, Sinks{
			DNS:  func(s Snapshot) { got <- fmt.Sprintf("dns %d %v", len(s.DNS().Services), s.TTL) },
			VIPs: func(s []lb.Service) error { got <- fmt.Sprintf("vips %d", len(s)); return nil },
			Mesh: func(p []mesh.Port) map[uint16]error { got <- fmt.Sprintf("mesh %d", len(p)); return nil },
		}, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-done })

	tab.Apply(&shoalpb.EndpointsMessage{Services: []*shoalpb.ServiceEndpoints{web()}})
	tab.Apply(&shoalpb.EndpointsMessage{Complete: true, Services: []*shoalpb.ServiceEndpoints{web()}, Tasks: []*shoalpb.EndpointTask{endpoint("t1", "10.200.0.2", 0)}})
	want := []string{"dns 1 1s", "mesh 1", "vips 1"}
	var calls []string
	for range want {
		select {
		case g := <-got:
			calls = append(calls, g)
		case <-time.After(10 * time.Second):
			t.Fatalf("sinks called %v, want %v", calls, want)
		}
	}
	if slices.Sort(calls); !slices.Equal(calls, want) {
		t.Fatalf("sinks called %v, want each once: %v", calls, want)
	}
	select {
	case g := <-got:
		t.Fatalf("a sink called again (%q) with nothing changed", g)
	default:
	}
}

// On several networks: DNS attaches the service to each with its aliases
// and knows each task's address per network; a VIP client among the
// node's tasks goes to the tasks' addresses on a network it shares with
// the service, and is refused when it shares none.
func TestSnapshotNetworks(t *testing.T) {
	tab := New()
	tab.SetClients(map[netip.Addr]network.TaskAddr{
		// on back itself
		netip.MustParseAddr("10.64.1.5"): {Network: "back", Networks: []string{"back"}},
		// front first, back second: goes to back
		netip.MustParseAddr("10.66.1.5"): {Network: "front", Networks: []string{"front", "back"}},
		netip.MustParseAddr("10.64.1.6"): {Network: "back", Networks: []string{"front", "back"}},
		// shares nothing: no source
		netip.MustParseAddr("10.65.1.5"): {Network: "other", Networks: []string{"other"}},
	})
	svc := web()
	svc.Networks = []*shoalpb.NetworkAttachmentConfig{{Target: "back", Aliases: []string{"DB"}}, {Target: "default"}}
	t1 := endpoint("t1", "10.64.0.2", 0)
	t1.Networks = []*shoalpb.TaskNetwork{{NetworkId: "back", Address: "10.64.0.2"}, {NetworkId: "default", Address: "10.200.0.2"}}
	tab.Apply(&shoalpb.EndpointsMessage{Complete: true, Services: []*shoalpb.ServiceEndpoints{svc}, Tasks: []*shoalpb.EndpointTask{t1}})
	snap := tab.Snapshot()

	dns := snap.DNS().Services[0]
	if len(dns.Networks) != 2 || dns.Networks[0].Network != "back" || !slices.Equal(dns.Networks[0].Aliases, []string{"db"}) ||
		dns.Networks[1].VIP != netip.MustParseAddr("10.201.0.7") ||
		dns.Tasks[0].Addrs["back"] != netip.MustParseAddr("10.64.0.2") || dns.Tasks[0].Addrs["default"] != netip.MustParseAddr("10.200.0.2") {
		t.Fatalf("DNS view %+v", dns)
	}
	vip := snap.VIPs()[0]
	back := []netip.Addr{netip.MustParseAddr("10.64.0.2")}
	want := []lb.Source{
		{From: netip.MustParsePrefix("10.64.1.5/32"), Backends: back},
		{From: netip.MustParsePrefix("10.64.1.6/32"), Backends: back},
		{From: netip.MustParsePrefix("10.66.1.5/32"), Backends: back},
	}
	if !slices.Equal(vip.Backends, back) || len(vip.Sources) != len(want) {
		t.Fatalf("VIP view %+v", vip)
	}
	for i, w := range want {
		if vip.Sources[i].From != w.From || !slices.Equal(vip.Sources[i].Backends, w.Backends) {
			t.Fatalf("VIP source %d: %+v, want %+v", i, vip.Sources[i], w)
		}
	}
}

// WaitVIPs returns once the VIP sink applied every change made before it.
func TestWaitVIPs(t *testing.T) {
	tab := New()
	applied := make(chan int, 10)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go tab.Run(ctx, Sinks{VIPs: func(s []lb.Service) error { applied <- len(s); return nil }}, slog.New(slog.DiscardHandler))
	tab.Apply(&shoalpb.EndpointsMessage{Complete: true, Services: []*shoalpb.ServiceEndpoints{web()}})
	tab.SetClients(map[netip.Addr]network.TaskAddr{netip.MustParseAddr("10.200.0.9"): {Network: "default", Networks: []string{"default"}}})
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := tab.WaitVIPs(wctx); err != nil {
		t.Fatalf("WaitVIPs: %v", err)
	}
	tab.mu.Lock()
	caught := tab.vipsGen == tab.gen
	tab.mu.Unlock()
	if !caught {
		t.Fatal("WaitVIPs returned before the sink applied the last change")
	}
}
