package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"shoal/netdns"
	"shoal/worker/endpoints"
	"shoal/worker/lb"
	"shoal/worker/mesh"
	"shoal/worker/network"
)

// propagation is what the deregistration delay adds to the DNS TTL: the
// time an endpoint change takes to reach every node (milliseconds in
// practice; this is the margin).
const propagation = 250 * time.Millisecond

// serviceNet is what a containerd node serves so that services find and
// reach each other (docs/networking.md): the endpoints the leader streams,
// the DNS server on the bridge's gateway, the VIP rules and the routing
// mesh. It lives as long as the task runtime.
type serviceNet struct {
	log       *slog.Logger
	endpoints *endpoints.Table
	lb        *lb.LB
	mesh      *mesh.Mesh

	mu      sync.Mutex
	dns     *netdns.Server // nil until the node has a subnet
	dnsAddr string
	last    netdns.Records
	lastTTL time.Duration
	ctx     context.Context
}

// openServiceNet starts the node's service networking; Run-time pieces
// stop with ctx.
func openServiceNet(ctx context.Context, netw *network.Network, log *slog.Logger) (*serviceNet, error) {
	balancer, err := lb.New(lb.Config{Table: vipTable(netw), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("service VIPs: %w", err)
	}
	s := &serviceNet{
		log:       log,
		endpoints: endpoints.New(),
		lb:        balancer,
		mesh:      mesh.New(mesh.Config{Logger: log}),
		ctx:       ctx,
	}
	go s.endpoints.Run(ctx, endpoints.Sinks{DNS: s.swapDNS, VIPs: s.lb.Apply, Mesh: s.mesh.Update}, log)
	return s, nil
}

// deregisterDelay is how long a task that may receive traffic runs on
// after it has left the endpoints, before its stop signal.
func (s *serviceNet) deregisterDelay() time.Duration {
	return s.endpoints.TTL() + propagation
}

// swapDNS gives the DNS server its new table, once it runs.
func (s *serviceNet) swapDNS(r netdns.Records, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.lastTTL = r, ttl
	if s.dns != nil {
		s.dns.Swap(netdns.NewTableTTL(r, ttl))
	}
}

// setSubnet starts the DNS server on the gateway of the node's task
// subnet, where every task's resolv.conf points, the first time the node
// learns its subnet.
func (s *serviceNet) setSubnet(subnet string) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return
	}
	addr := net.JoinHostPort(p.Masked().Addr().Next().String(), "53")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dns != nil {
		if s.dnsAddr != addr {
			s.log.Warn("the node's task subnet changed; its DNS server stays on the old gateway until the daemon restarts", "dns", s.dnsAddr, "subnet", subnet)
		}
		return
	}
	srv, err := netdns.NewServer(netdns.Config{Addrs: []string{addr}, TTL: netdns.DefaultTTL, Logger: s.log})
	if err != nil {
		s.log.Warn("cannot start the node's DNS server", "addr", addr, "err", err)
		return
	}
	srv.Swap(netdns.NewTableTTL(s.last, s.lastTTL))
	s.dns, s.dnsAddr = srv, addr
	go func() {
		if err := srv.Run(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("the node's DNS server stopped", "addr", addr, "err", err)
		}
	}()
}

// DNS is the node's DNS server, nil until the node has a subnet.
func (s *serviceNet) DNS() *netdns.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dns
}

// close stops the mesh and removes the VIP rules (the DNS server ends
// with the context).
func (s *serviceNet) close() {
	if err := s.mesh.Close(); err != nil {
		s.log.Warn("closing the routing mesh", "err", err)
	}
	if err := s.lb.Destroy(); err != nil {
		s.log.Warn("removing the service VIP rules", "err", err)
	}
}

// destroyVIPs removes the VIP rules of the node whose network is netw
// (its nftables table); for purge, when the daemon does not run.
func destroyVIPs(netw *network.Network) error {
	balancer, err := lb.New(lb.Config{Table: vipTable(netw)})
	if err != nil {
		return err
	}
	return balancer.Destroy()
}

// vipTable names the node's nftables table after its network's tag.
func vipTable(netw *network.Network) string { return "shoal-" + netw.Tag() }
