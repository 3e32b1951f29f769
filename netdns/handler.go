package netdns

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Handler answers a query or passes it to the next handler. ServeDNS writes
// at most one response to w; it may write none (the client then times out),
// which a handler does only for input it must not answer.
type Handler interface {
	ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg)
	// Name identifies the handler in logs.
	Name() string
}

// scopeKey carries an explicit querier scope in a context (Lookup), which
// wins over Config.Scope of the querier's address.
type scopeKey struct{}

type scope struct {
	networks []string
	all      bool
}

// withScope returns ctx answering as a querier on networks (nil: all).
func withScope(ctx context.Context, networks []string) context.Context {
	return context.WithValue(ctx, scopeKey{}, scope{networks: networks, all: networks == nil})
}

// addrPorter is implemented by shoal's own response writers, so the source
// address is read without allocating a net.Addr.
type addrPorter interface {
	remoteAddrPort() netip.AddrPort
}

// cluster answers the names of the cluster's table and passes the rest to
// next.
type cluster struct {
	table *atomic.Pointer[Table]
	scope func(src netip.Addr) ([]string, bool)
	// rot rotates multi-record answers per query so clients that take the
	// first address spread over all of them.
	rot  atomic.Uint32
	next Handler
}

func (c *cluster) Name() string { return "cluster" }

// querier returns the networks the querier sees; all means every network.
func (c *cluster) querier(ctx context.Context, w dns.ResponseWriter) (networks []string, all bool) {
	if s, ok := ctx.Value(scopeKey{}).(scope); ok {
		return s.networks, s.all
	}
	if c.scope == nil {
		return nil, true
	}
	var src netip.Addr
	if ap, ok := w.(addrPorter); ok {
		src = ap.remoteAddrPort().Addr()
	} else if a := w.RemoteAddr(); a != nil {
		switch a := a.(type) {
		case *net.UDPAddr:
			src = a.AddrPort().Addr()
		case *net.TCPAddr:
			src = a.AddrPort().Addr()
		}
	}
	networks, known := c.scope(src.Unmap())
	if !known {
		return nil, true
	}
	return networks, false
}

// lowerName returns name lower-cased, without allocating when it already is.
func lowerName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

func (c *cluster) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := lowerName(q.Name)
	e := c.table.Load().lookup(name)
	if e == nil {
		c.next.ServeDNS(ctx, w, r)
		return
	}
	networks, all := c.querier(ctx, w)
	m := replyTo(r)
	m.Authoritative = true
	visible := false
	n := 0
	for _, s := range e.sets {
		if all || contains(networks, s.network) {
			visible = true
			n += len(s.byType(q.Qtype))
		}
	}
	switch {
	case !visible:
		// The name is the cluster's but not on this querier's networks:
		// it does not exist for this querier (see doc.go: not forwarded).
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeANY:
		m.Answer = answerAny(e, networks, all)
	case n > 0:
		m.Answer = make([]dns.RR, 0, n)
		for _, s := range e.sets {
			if all || contains(networks, s.network) {
				m.Answer = append(m.Answer, s.byType(q.Qtype)...)
				if q.Qtype == dns.TypeSRV {
					m.Extra = append(m.Extra, s.extra...)
				}
			}
		}
		if q.Qtype == dns.TypeSRV {
			m.Answer = dedupSRV(m.Answer)
		}
		if len(m.Answer) > 1 && q.Qtype != dns.TypePTR {
			rotate(m.Answer, int(c.rot.Add(1)%uint32(len(m.Answer))))
		}
	}
	// default: NOERROR with no answer (NODATA).
	if name != q.Name {
		renameOwners(m.Answer, name, q.Name)
	}
	if opt := r.IsEdns0(); opt != nil {
		m.Extra = append(m.Extra, newOPT())
	}
	_ = w.WriteMsg(m)
}

// answerAny is the RFC 8482-style answer to ANY: every record the name
// has for the querier (the cluster's names have few).
func answerAny(e *entry, networks []string, all bool) []dns.RR {
	var rrs []dns.RR
	for _, s := range e.sets {
		if all || contains(networks, s.network) {
			rrs = append(rrs, s.a...)
			rrs = append(rrs, s.aaaa...)
			rrs = append(rrs, s.srv...)
			rrs = append(rrs, s.ptr...)
		}
	}
	return rrs
}

// renameOwners gives the answer records the owner name exactly as the
// client asked it (mixed case), copying the shared records it changes.
func renameOwners(rrs []dns.RR, lower, asked string) {
	for i, rr := range rrs {
		if rr.Header().Name == lower {
			cp := dns.Copy(rr)
			cp.Header().Name = asked
			rrs[i] = cp
		}
	}
}

// dedupSRV drops repeated SRV targets: a querier on two of a service's
// networks reaches each task under one name, whose address records (one per
// network) are all in the additional section.
func dedupSRV(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for i, rr := range rrs {
		dup := false
		for _, prev := range rrs[:i] {
			if prev.(*dns.SRV).Target == rr.(*dns.SRV).Target {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, rr)
		}
	}
	return out
}

// rotate moves the first k records to the end, in place.
func rotate(rrs []dns.RR, k int) {
	if k == 0 {
		return
	}
	tmp := make([]dns.RR, k)
	copy(tmp, rrs[:k])
	copy(rrs, rrs[k:])
	copy(rrs[len(rrs)-k:], tmp)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// newOPT is the OPT record of a cluster answer to an EDNS0 query (one per
// answer: packing a message writes its rcode into the OPT). 1232 is the
// payload size the DNS flag day 2020 recommends, fitting every path
// without fragmentation.
func newOPT() *dns.OPT {
	return &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}}
}

// replyTo starts the response to r: same ID, opcode, question and RD,
// recursion available (the server forwards).
func replyTo(r *dns.Msg) *dns.Msg {
	m := &dns.Msg{}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.RecursionAvailable = true
	m.CheckingDisabled = r.CheckingDisabled
	m.Question = r.Question
	return m
}

// errorReply is a response with only the header (and question, if any)
// carrying rcode.
func errorReply(r *dns.Msg, rcode int) *dns.Msg {
	m := replyTo(r)
	if len(r.Question) != 1 {
		m.Question = nil
	}
	m.Rcode = rcode
	if rcode == dns.RcodeFormatError || rcode == dns.RcodeNotImplemented {
		m.RecursionAvailable = false
	}
	return m
}
