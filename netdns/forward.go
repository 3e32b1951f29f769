package netdns

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/miekg/dns"
)

// upstreamTimeout bounds one exchange with one upstream (UDP, and the TCP
// retry of a truncated answer each get their own).
const upstreamTimeout = 2 * time.Second

// forwarder sends the query to the upstream resolvers in order and relays
// the first answer, or SERVFAIL when none answers.
type forwarder struct {
	upstreams []string
	timeout   time.Duration
	log       *slog.Logger
}

func (f *forwarder) Name() string { return "forward" }

func (f *forwarder) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	resp := f.exchange(ctx, r, tcp)
	if resp == nil {
		_ = w.WriteMsg(errorReply(r, dns.RcodeServerFailure))
		return
	}
	resp.Id = r.Id
	_ = w.WriteMsg(resp)
}

// exchange asks each upstream in turn. The query goes as the client sent it
// (its EDNS0 OPT and UDP size included), over UDP unless the client used
// TCP; a truncated UDP answer is asked again over TCP, so the client gets
// the whole answer when its transport can carry it.
func (f *forwarder) exchange(ctx context.Context, r *dns.Msg, tcp bool) *dns.Msg {
	for _, up := range f.upstreams {
		if ctx.Err() != nil {
			return nil
		}
		if !tcp {
			resp, err := f.try(ctx, "udp", r, up)
			if err == nil && !resp.Truncated {
				return resp
			}
			if err != nil {
				f.log.Debug("dns upstream failed", "upstream", up, "net", "udp", "name", r.Question[0].Name, "err", err)
				continue
			}
		}
		resp, err := f.try(ctx, "tcp", r, up)
		if err == nil {
			return resp
		}
		f.log.Debug("dns upstream failed", "upstream", up, "net", "tcp", "name", r.Question[0].Name, "err", err)
	}
	return nil
}

func (f *forwarder) try(ctx context.Context, network string, r *dns.Msg, up string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: f.timeout}
	if r.IsEdns0() == nil {
		// A client without EDNS0 takes 512 bytes over UDP; a bigger
		// upstream answer comes back truncated and is asked over TCP.
		c.UDPSize = dns.MinMsgSize
	}
	resp, _, err := c.ExchangeContext(ctx, r, up)
	return resp, err
}

// async runs next in its own goroutine, at most limit at a time, so a slow
// upstream never stalls the socket loop that serves the cluster's names.
// Past the limit the query is answered SERVFAIL at once.
type async struct {
	next Handler
	sem  chan struct{}
}

func (a *async) Name() string { return a.next.Name() }

func (a *async) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	select {
	case a.sem <- struct{}{}:
	default:
		_ = w.WriteMsg(errorReply(r, dns.RcodeServerFailure))
		return
	}
	if d, ok := w.(interface{ detach() dns.ResponseWriter }); ok {
		w = d.detach()
	}
	go func() {
		defer func() { <-a.sem }()
		a.next.ServeDNS(ctx, w, r)
	}()
}
