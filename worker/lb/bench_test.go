package lb

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	"shoal/internal/testutil"
)

// benchServices is n services of k backends each: VIPs 10.201.x.y, backends
// in 10.200.0.0/16.
func benchServices(n, k int) []Service {
	services := make([]Service, n)
	for i := range services {
		s := Service{ID: fmt.Sprintf("service-%04d", i), VIP: netip.AddrFrom4([4]byte{10, 201, byte(i >> 8), byte(i)})}
		for j := range k {
			s.Backends = append(s.Backends, netip.AddrFrom4([4]byte{10, 200, byte((i*k + j) >> 8), byte(i*k + j)}))
		}
		services[i] = s
	}
	return services
}

// benchSourcedServices is n services of k backends on each of m networks
// (10.(100+j).0.0/16) plus k catch-all backends, as benchServices.
func benchSourcedServices(n, m, k int) []Service {
	services := benchServices(n, k)
	for i := range services {
		for j := range m {
			src := Source{From: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + j), 0, 0}), 16)}
			for b := range k {
				src.Backends = append(src.Backends, netip.AddrFrom4([4]byte{10, byte(100 + j), byte((i*k + b) >> 8), byte(i*k + b)}))
			}
			services[i].Sources = append(services[i].Sources, src)
		}
	}
	return services
}

// BenchmarkApplySources measures Apply with 200 services of 10 catch-all
// backends and 4 networks of 10 backends each: "full" replaces the whole
// table, "one-changed" replaces one backend of one network of one
// service.
func BenchmarkApplySources(b *testing.B) {
	testutil.RequireRoot(b, "nft")
	ns := newNS(b, "bench")
	l, err := New(Config{Table: "shoal-bench", NetNS: ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	services := benchSourcedServices(200, 4, 10)
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			l.mu.Lock()
			l.synced = false
			l.mu.Unlock()
			if err := l.Apply(services); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-changed", func(b *testing.B) {
		if err := l.Apply(services); err != nil {
			b.Fatal(err)
		}
		changed := benchSourcedServices(200, 4, 10)
		spare := netip.MustParseAddr("10.99.255.254")
		i := 0
		for b.Loop() {
			s := &changed[i%len(changed)]
			src := &s.Sources[i%len(s.Sources)]
			src.Backends[0], spare = spare, src.Backends[0]
			i++
			if err := l.Apply(changed); err != nil {
				b.Fatal(err)
			}
		}
	})
	if err := l.Destroy(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApply measures Apply with 1,000 services of 10 backends in a
// namespace of its own: "full" replaces the whole table each time (the
// first Apply after New), "one-changed" changes one service's backends,
// "unchanged" is the agent's periodic resync when nothing changed.
func BenchmarkApply(b *testing.B) {
	testutil.RequireRoot(b, "nft")
	ns := newNS(b, "bench")
	l, err := New(Config{Table: "shoal-bench", NetNS: ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	services := benchServices(1000, 10)
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			l.mu.Lock()
			l.synced = false
			l.mu.Unlock()
			if err := l.Apply(services); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-changed", func(b *testing.B) {
		if err := l.Apply(services); err != nil {
			b.Fatal(err)
		}
		changed := benchServices(1000, 10)
		spare := netip.MustParseAddr("10.200.255.254")
		i := 0
		for b.Loop() {
			s := &changed[i%len(changed)]
			s.Backends[0], spare = spare, s.Backends[0]
			i++
			if err := l.Apply(changed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		if err := l.Apply(services); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := l.Apply(services); err != nil {
				b.Fatal(err)
			}
		}
	})
	if err := l.Destroy(); err != nil {
		b.Fatal(err)
	}
}
