package netdns

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/miekg/dns"
)

// dedup drops repeated records, which the builder adds without checking
// (two names of a service that collide, two tasks with one address): an
// RRset must not hold the same record twice (RFC 2181 §5). Sorting instead
// of a set keeps the build free of per-record map work; the order does not
// matter since answers are rotated.
func (s *rrset) dedup() {
	s.a = sortCompact(s.a, func(x, y dns.RR) int { return bytes.Compare(x.(*dns.A).A, y.(*dns.A).A) })
	s.aaaa = sortCompact(s.aaaa, func(x, y dns.RR) int { return bytes.Compare(x.(*dns.AAAA).AAAA, y.(*dns.AAAA).AAAA) })
	s.ptr = sortCompact(s.ptr, func(x, y dns.RR) int { return cmp.Compare(x.(*dns.PTR).Ptr, y.(*dns.PTR).Ptr) })
	s.srv = sortCompact(s.srv, func(x, y dns.RR) int {
		a, b := x.(*dns.SRV), y.(*dns.SRV)
		return cmp.Or(cmp.Compare(a.Target, b.Target), cmp.Compare(a.Port, b.Port))
	})
	s.extra = sortCompact(s.extra, func(x, y dns.RR) int {
		return cmp.Or(cmp.Compare(x.Header().Name, y.Header().Name), bytes.Compare(ipOf(x), ipOf(y)))
	})
}

// ipOf is the address of an A or AAAA record.
func ipOf(rr dns.RR) []byte {
	switch rr := rr.(type) {
	case *dns.A:
		return rr.A
	case *dns.AAAA:
		return rr.AAAA
	}
	return nil
}

func sortCompact(rrs []dns.RR, c func(x, y dns.RR) int) []dns.RR {
	if len(rrs) < 2 {
		return rrs
	}
	slices.SortFunc(rrs, c)
	return slices.CompactFunc(rrs, func(x, y dns.RR) bool { return c(x, y) == 0 })
}
