package netdns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// ErrConfig is returned by NewServer for an unusable Config.
var ErrConfig = errors.New("netdns: invalid config")

// Config configures a Server.
type Config struct {
	// Addrs are the listen addresses "ip:port"; the server serves UDP and
	// TCP on each. Port 0 picks a free port (Addrs reports it).
	Addrs []string
	// Upstreams are "ip:port" resolvers for names outside the cluster,
	// asked in order; empty: the nameservers of the host's
	// /etc/resolv.conf.
	Upstreams []string
	// TTL of cluster answers, rounded up to whole seconds; 0 means TTL 0
	// (answers are not cached). Use DefaultTTL for 1 s.
	TTL time.Duration
	// Scope returns the networks of the querying task; known=false (the
	// host itself, a debug client) sees every network. nil: every querier
	// sees everything.
	Scope  func(src netip.Addr) (networks []string, known bool)
	Logger *slog.Logger
}

// Limits of the TCP side: a slow or idle client cannot hold a connection
// (and its goroutine) for long, nor can clients open without bound.
const (
	maxTCPConns      = 256
	tcpReadTimeout   = 2 * time.Second
	tcpIdleTimeout   = 8 * time.Second
	maxTCPQueries    = 256
	maxForwardsInUse = 1024
)

// Server is the node's DNS server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	table atomic.Pointer[Table]
	// udp serves the UDP sockets: forwarding runs in its own goroutine.
	// sync serves TCP connections and Lookup: forwarding blocks the caller.
	udp, sync Handler
	fwd       *forwarder

	ready chan struct{}
	mu    sync.Mutex
	addrs []string
}

// NewServer checks cfg and returns a server with an empty table (every name
// is forwarded until the first Swap).
func NewServer(cfg Config) (*Server, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("%w: Addrs is empty: give at least one listen address such as 10.200.3.1:53", ErrConfig)
	}
	for _, a := range cfg.Addrs {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return nil, fmt.Errorf("%w: listen address %q: %v (want ip:port)", ErrConfig, a, err)
		}
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("%w: TTL %s is negative: use 0 or more", ErrConfig, cfg.TTL)
	}
	ups := cfg.Upstreams
	if len(ups) == 0 {
		ups = resolvConfUpstreams("/etc/resolv.conf")
	}
	for _, u := range ups {
		if _, err := netip.ParseAddrPort(u); err != nil {
			return nil, fmt.Errorf("%w: upstream %q: %v (want ip:port)", ErrConfig, u, err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, ready: make(chan struct{})}
	s.fwd = &forwarder{upstreams: ups, timeout: upstreamTimeout, log: log}
	s.udp = &cluster{table: &s.table, scope: cfg.Scope, next: &async{next: s.fwd, sem: make(chan struct{}, maxForwardsInUse)}}
	s.sync = &cluster{table: &s.table, scope: cfg.Scope, next: s.fwd}
	s.table.Store(newTable(Records{}, cfg.TTL))
	return s, nil
}

// resolvConfUpstreams reads the nameservers of a resolv.conf as ip:port.
func resolvConfUpstreams(path string) []string {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil
	}
	var ups []string
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			ups = append(ups, netip.AddrPortFrom(a, 53).String())
		}
	}
	return ups
}

// Swap makes t the table every following query is answered from. t is
// never modified; a nil t answers nothing from the cluster.
func (s *Server) Swap(t *Table) {
	if t == nil {
		t = newTable(Records{}, s.cfg.TTL)
	}
	s.table.Store(t.withTTL(s.cfg.TTL))
}

// Ready is closed once the server listens on every address. If Run fails
// to listen it returns the error and Ready stays open: wait for both.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs lists the bound addresses ("ip:port", the same port for UDP and
// TCP), once Ready is closed.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs)
}

// Lookup answers a query as the server would for a querier on networks
// (nil: all networks), forwarding names outside the cluster. It is for
// debugging (`shoal dns lookup`); the returned message is the caller's.
func (s *Server) Lookup(ctx context.Context, name string, qtype uint16, networks []string) (*dns.Msg, error) {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return nil, fmt.Errorf("netdns: lookup %q: not a domain name", name)
	}
	r := new(dns.Msg)
	r.SetQuestion(dns.Fqdn(name), qtype)
	r.SetEdns0(maxUDPPayload, false)
	w := &recorder{done: make(chan struct{})}
	s.serveMsg(withScope(ctx, networks), w, r, s.sync)
	select {
	case <-w.done:
		return w.msg, nil
	default:
		return nil, fmt.Errorf("netdns: lookup %q: no answer", name)
	}
}

// Run listens on every address and serves until ctx is cancelled; it
// returns once every listener is closed and every socket loop ended.
func (s *Server) Run(ctx context.Context) error {
	var udps []*net.UDPConn
	var tcps []net.Listener
	closeAll := func() {
		for _, c := range udps {
			_ = c.Close()
		}
		for _, l := range tcps {
			_ = l.Close()
		}
	}
	var bound []string
	for _, a := range s.cfg.Addrs {
		us, tl, addr, err := listen(ctx, a)
		if err != nil {
			closeAll()
			return err
		}
		udps, tcps, bound = append(udps, us...), append(tcps, tl), append(bound, addr)
	}
	// Never forward to ourselves: the host's resolv.conf may name this
	// very address.
	s.fwd.upstreams = slices.DeleteFunc(slices.Clone(s.fwd.upstreams), func(u string) bool { return slices.Contains(bound, u) })
	s.mu.Lock()
	s.addrs = bound
	s.mu.Unlock()

	var wg sync.WaitGroup
	var servers []*dns.Server
	for _, c := range udps {
		wg.Go(func() { s.serveUDP(ctx, c) })
	}
	for _, l := range tcps {
		srv := &dns.Server{
			Listener:      &limitListener{Listener: l, slots: make(chan struct{}, maxTCPConns)},
			Net:           "tcp",
			ReadTimeout:   tcpReadTimeout,
			WriteTimeout:  tcpReadTimeout,
			IdleTimeout:   func() time.Duration { return tcpIdleTimeout },
			MaxTCPQueries: maxTCPQueries,
			MsgAcceptFunc: accept,
			Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
				s.serveMsg(ctx, w, r, s.sync)
			}),
		}
		servers = append(servers, srv)
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				s.log.Error("dns tcp server stopped", "addr", l.Addr().String(), "err", err)
			}
		})
	}
	s.log.Info("dns server listening", "addrs", bound, "upstreams", s.fwd.upstreams)
	close(s.ready)
	<-ctx.Done()
	for _, srv := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.ShutdownContext(sctx)
		cancel()
	}
	// ShutdownContext does nothing to a server whose goroutine has not
	// marked it started yet (a Run cancelled right after it was ready):
	// closing the listeners ends such a server's Accept loop either way.
	closeAll()
	wg.Wait()
	return nil
}

// listen binds addr over TCP and, on the same port, one UDP socket per CPU
// with SO_REUSEPORT so the kernel spreads queries over the socket loops.
func listen(ctx context.Context, addr string) ([]*net.UDPConn, net.Listener, string, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	n := runtime.GOMAXPROCS(0)
	var lastErr error
	// With port 0 the TCP port picked may be taken for UDP: try again.
	for range 10 {
		tl, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, "", fmt.Errorf("netdns: listen on %s/tcp: %w", addr, err)
		}
		bound := tl.Addr().String()
		var udps []*net.UDPConn
		for range n {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				lastErr = err
				break
			}
			udps = append(udps, pc.(*net.UDPConn))
		}
		if len(udps) == n {
			return udps, tl, bound, nil
		}
		for _, c := range udps {
			_ = c.Close()
		}
		_ = tl.Close()
		if ap, _ := netip.ParseAddrPort(addr); ap.Port() != 0 {
			break
		}
	}
	return nil, nil, "", fmt.Errorf("netdns: listen on %s/udp: %w", addr, lastErr)
}

// servePacket decodes one UDP query and answers it, as miekg/dns's server
// does for TCP: no answer to garbage or to responses, FORMERR or NOTIMP
// to what the header shows we will not answer.
func (s *Server) servePacket(ctx context.Context, w *udpWriter, pkt []byte) {
	if len(pkt) < 12 {
		return // not even a header: any reply could be used to amplify
	}
	h := headerOf(pkt)
	w.size = dns.MinMsgSize
	req := new(dns.Msg)
	switch accept(h) {
	case dns.MsgIgnore:
		return
	case dns.MsgReject:
		_ = w.WriteMsg(headerReply(h, dns.RcodeFormatError))
		return
	case dns.MsgRejectNotImplemented:
		_ = w.WriteMsg(headerReply(h, dns.RcodeNotImplemented))
		return
	}
	if err := req.Unpack(pkt); err != nil {
		_ = w.WriteMsg(headerReply(h, dns.RcodeFormatError))
		return
	}
	w.size = clientUDPSize(req)
	s.serveMsg(ctx, w, req, s.udp)
}

// headerOf reads the header of a packet of at least 12 bytes.
func headerOf(pkt []byte) dns.Header {
	return dns.Header{
		Id:      binary.BigEndian.Uint16(pkt),
		Bits:    binary.BigEndian.Uint16(pkt[2:]),
		Qdcount: binary.BigEndian.Uint16(pkt[4:]),
		Ancount: binary.BigEndian.Uint16(pkt[6:]),
		Nscount: binary.BigEndian.Uint16(pkt[8:]),
		Arcount: binary.BigEndian.Uint16(pkt[10:]),
	}
}

// headerReply answers a query we could not or would not parse.
func headerReply(h dns.Header, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id = h.Id
	m.Response = true
	m.Opcode = int(h.Bits>>11) & 0xF
	m.Rcode = rcode
	return m
}

// accept sorts a query by its header alone: responses are dropped (a
// reflected or spoofed packet must not start a ping-pong), anything but a
// standard query is NOTIMP, and a query must carry exactly one question.
func accept(h dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if h.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(h.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if h.Qdcount != 1 || h.Ancount > 0 || h.Nscount > 0 || h.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// serveMsg checks a decoded query and hands it to chain.
func (s *Server) serveMsg(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, chain Handler) {
	if r.Response {
		return
	}
	if r.Opcode != dns.OpcodeQuery {
		_ = w.WriteMsg(errorReply(r, dns.RcodeNotImplemented))
		return
	}
	if len(r.Question) != 1 {
		_ = w.WriteMsg(errorReply(r, dns.RcodeFormatError))
		return
	}
	q := r.Question[0]
	switch {
	case q.Qclass != dns.ClassINET:
		// Only the Internet class exists here (no CHAOS version.bind).
		_ = w.WriteMsg(errorReply(r, dns.RcodeRefused))
		return
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		_ = w.WriteMsg(errorReply(r, dns.RcodeNotImplemented))
		return
	}
	chain.ServeDNS(ctx, w, r)
}

// limitListener holds Accept while maxTCPConns connections are open; the
// kernel's backlog keeps the rest waiting.
type limitListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &slotConn{Conn: c, release: func() { <-l.slots }}, nil
}

type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
