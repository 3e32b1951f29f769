package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Mode is how a published port proxies its connections.
type Mode int

const (
	// ModeTCP proxies the byte stream of each connection to one backend.
	ModeTCP Mode = iota
	// ModeHTTP terminates HTTP/1.1 and forwards each request to a backend
	// of its own, adding X-Forwarded-For, X-Forwarded-Proto and
	// X-Forwarded-Host.
	ModeHTTP
)

func (m Mode) String() string {
	switch m {
	case ModeTCP:
		return "tcp"
	case ModeHTTP:
		return "http"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// ProxyProtocol is the PROXY protocol header a TCP-mode port sends to the
// task first on each connection, so that the task learns the client's
// address.
type ProxyProtocol int

const (
	// ProxyNone sends no header: the task sees the mesh as its client.
	ProxyNone ProxyProtocol = iota
	// ProxyV1 sends the text header "PROXY TCP4 src dst sport dport\r\n".
	ProxyV1
	// ProxyV2 sends the binary header with its 12-byte signature.
	ProxyV2
)

func (p ProxyProtocol) String() string {
	switch p {
	case ProxyNone:
		return "none"
	case ProxyV1:
		return "v1"
	case ProxyV2:
		return "v2"
	}
	return "proxy(" + strconv.Itoa(int(p)) + ")"
}

// Port is one published port of a service in ingress mode.
type Port struct {
	Published uint16
	// Protocol is "tcp" (or empty, meaning tcp). The mesh does not
	// publish UDP ports: Update reports an error for them.
	Protocol string
	Mode     Mode
	// Proxy applies to ModeTCP only.
	Proxy ProxyProtocol
	// Service names the service, for errors and logs.
	Service string
	// Backends are the service's ready tasks. With none, a TCP port
	// accepts and closes each connection and an HTTP port answers 503.
	Backends []Backend
}

// Backend is one ready task behind a published port.
type Backend struct {
	// ID is the task ID: a backend with the same ID and address in two
	// updates is the same backend, keeping its open connections and health.
	ID string
	// Addr is the task's address and target port.
	Addr netip.AddrPort
	// Drain is the task's stop grace period: once the backend leaves the
	// set, its open connections (HTTP: requests in flight) may last this
	// long, then they are closed.
	Drain time.Duration
}

// Config configures a Mesh.
type Config struct {
	Logger *slog.Logger
	// ListenHost is the address the ports listen on; "" means all
	// addresses of the node.
	ListenHost string
	// DialTimeout bounds one connection attempt to a backend; 0 means 2 s.
	DialTimeout time.Duration
	// SuspectFor is how long a backend that refused or timed out a dial is
	// avoided by new connections while others are up; 0 means 2 s.
	SuspectFor time.Duration
}

// Errors Update reports per port; test them with errors.Is.
var (
	// ErrPortInUse: another process (or another listener) holds the port.
	ErrPortInUse = errors.New("port already in use")
	// ErrUnsupported: the port asks for something the mesh does not do.
	ErrUnsupported = errors.New("not supported by the routing mesh")
	// ErrClosed: the mesh was closed.
	ErrClosed = errors.New("routing mesh closed")
)

// Mesh is the routing mesh of one node: a listener per published port,
// each balancing over the service's ready tasks on any node. It is safe
// for concurrent use.
type Mesh struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex // serialises Update and Close
	ports  map[uint16]*port
	closed bool
	// retired are ports removed by an update whose connections still
	// drain; Close ends them too.
	retired map[*port]struct{}
}

// New returns a mesh with no ports.
func New(cfg Config) *Mesh {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.SuspectFor <= 0 {
		cfg.SuspectFor = 2 * time.Second
	}
	return &Mesh{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "mesh"),
		ports:   map[uint16]*port{},
		retired: map[*port]struct{}{},
	}
}

// Update replaces the desired set of published ports atomically: it opens
// listeners for new ports, closes those of removed ports (their open
// connections drain up to each backend's Drain) and swaps the backends of
// the others. From the moment Update returns, no new connection goes to a
// backend that is no longer listed. It returns one error per port that could
// not be served, keyed by published port; the other ports keep working.
func (m *Mesh) Update(ports []Port) map[uint16]error {
	m.mu.Lock()
	defer m.mu.Unlock()
	errs := map[uint16]error{}
	if m.closed {
		for _, p := range ports {
			errs[p.Published] = fmt.Errorf("port %d/%s: %w", p.Published, protocolName(p.Protocol), ErrClosed)
		}
		return errs
	}

	want := map[uint16]Port{}
	for _, p := range ports {
		if err := validate(p); err != nil {
			errs[p.Published] = err
			continue
		}
		if _, dup := want[p.Published]; dup {
			errs[p.Published] = fmt.Errorf("port %d/tcp is published twice (services %q and %q); publish each port once", p.Published, want[p.Published].Service, p.Service)
			continue
		}
		want[p.Published] = p
	}

	// Close removed ports and ports whose mode changes first, so that a
	// port moving between modes can listen again at once.
	for num, cur := range m.ports {
		p, keep := want[num]
		if keep && cur.mode == p.Mode {
			continue
		}
		delete(m.ports, num)
		m.retire(cur)
	}
	for num, p := range want {
		if cur, ok := m.ports[num]; ok {
			cur.update(p)
			continue
		}
		np, err := m.listen(p)
		if err != nil {
			errs[num] = err
			m.log.Warn("cannot publish port", "port", num, "service", p.Service, "err", err)
			continue
		}
		m.ports[num] = np
		m.log.Info("published port", "port", num, "service", p.Service, "mode", p.Mode, "backends", len(p.Backends))
	}
	return errs
}

// validate checks what the mesh can serve.
func validate(p Port) error {
	proto := protocolName(p.Protocol)
	switch {
	case proto == "udp":
		return fmt.Errorf("port %d/udp: %w: the routing mesh publishes TCP ports only; publish the port in host mode or use tcp", p.Published, ErrUnsupported)
	case proto != "tcp":
		return fmt.Errorf("port %d: protocol %q: %w; use tcp", p.Published, p.Protocol, ErrUnsupported)
	case p.Published == 0:
		return fmt.Errorf("port 0/tcp (service %q): %w: a published port must be 1-65535", p.Service, ErrUnsupported)
	case p.Mode != ModeTCP && p.Mode != ModeHTTP:
		return fmt.Errorf("port %d/tcp: mode %v: %w; use tcp or http", p.Published, p.Mode, ErrUnsupported)
	case p.Proxy < ProxyNone || p.Proxy > ProxyV2:
		return fmt.Errorf("port %d/tcp: proxy protocol %v: %w; use none, v1 or v2", p.Published, p.Proxy, ErrUnsupported)
	case p.Mode == ModeHTTP && p.Proxy != ProxyNone:
		return fmt.Errorf("port %d/tcp: proxy protocol %v with http mode: %w; http mode passes the client address as X-Forwarded-For, use tcp mode for the PROXY protocol", p.Published, p.Proxy, ErrUnsupported)
	}
	for _, b := range p.Backends {
		if !b.Addr.IsValid() || b.Addr.Port() == 0 {
			return fmt.Errorf("port %d/tcp: backend %q has no valid address and target port (%v)", p.Published, b.ID, b.Addr)
		}
	}
	return nil
}

func protocolName(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

// listen opens the port's listener and starts serving it.
func (m *Mesh) listen(p Port) (*port, error) {
	addr := net.JoinHostPort(m.cfg.ListenHost, strconv.Itoa(int(p.Published)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("port %d/tcp is already in use on this node (by another process); choose another published port or free it: %w", p.Published, ErrPortInUse)
		}
		return nil, fmt.Errorf("port %d/tcp: cannot listen on %s: %w", p.Published, addr, err)
	}
	np := newPort(m, p, ln.(*net.TCPListener))
	np.start()
	return np, nil
}

// retire stops a port's listener and lets its connections drain; the port
// leaves m.retired once the last one ended.
func (m *Mesh) retire(p *port) {
	m.retired[p] = struct{}{}
	p.retire(func() {
		m.mu.Lock()
		delete(m.retired, p)
		m.mu.Unlock()
	})
	m.log.Info("unpublished port", "port", p.published, "service", p.service())
}

// Close closes every listener and every proxied connection, and returns
// once all of the mesh's goroutines have ended.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	all := make([]*port, 0, len(m.ports)+len(m.retired))
	for _, p := range m.ports {
		all = append(all, p)
	}
	for p := range m.retired {
		all = append(all, p)
	}
	m.ports = map[uint16]*port{}
	m.mu.Unlock()
	for _, p := range all {
		p.close()
	}
	return nil
}

// PortStats describes one published port.
type PortStats struct {
	Published uint16
	Mode      Mode
	Service   string
	// Backends lists the current backends, then those still draining.
	Backends []BackendStats
}

// BackendStats describes one backend of a port.
type BackendStats struct {
	ID   string
	Addr netip.AddrPort
	// Open counts proxied connections (TCP mode) or requests in flight
	// (HTTP mode).
	Open int
	// Total counts connections (TCP) or requests (HTTP) it was given.
	Total uint64
	// Suspect: a recent dial failed, new connections avoid it.
	Suspect bool
	// Draining: it left the set; its open connections are ending.
	Draining bool
}

// Stats returns the published ports, sorted by number, with their
// backends; ports removed by an update but still draining are not listed.
func (m *Mesh) Stats() []PortStats {
	m.mu.Lock()
	ports := make([]*port, 0, len(m.ports))
	for _, p := range m.ports {
		ports = append(ports, p)
	}
	m.mu.Unlock()
	out := make([]PortStats, 0, len(ports))
	for _, p := range ports {
		out = append(out, p.stats())
	}
	slices.SortFunc(out, func(a, b PortStats) int { return int(a.Published) - int(b.Published) })
	return out
}
