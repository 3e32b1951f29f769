package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"shoal/netdns"
	shoalpb "shoal/proto"
	"shoal/worker/endpoints"
	"shoal/worker/lb"
	"shoal/worker/mesh"
	"shoal/worker/network"
	"shoal/worker/runtime"
)

// propagation is what the deregistration delay adds to the DNS TTL: the
// time an endpoint change takes to reach every node (milliseconds in
// practice; this is the margin).
const propagation = 250 * time.Millisecond

// serviceNet is what a containerd node serves so that services find and
// reach each other (docs/networking.md): the endpoints the leader streams,
// a DNS server on the gateway of each of the node's network slices, the
// VIP rules and the routing mesh. It lives as long as the task runtime.
type serviceNet struct {
	log       *slog.Logger
	endpoints *endpoints.Table
	lb        *lb.LB
	mesh      *mesh.Mesh
	ctx       context.Context
	upstreams []string // for names outside the cluster; nil: the host's

	// scope is what the DNS servers know of their queriers.
	scope atomic.Pointer[dnsScope]
	// portErrs are the ingress ports the mesh cannot serve, for the
	// agent's heartbeats.
	portErrs atomic.Pointer[[]*shoalpb.PortError]

	mu      sync.Mutex
	dns     map[string]*dnsListener // by listen address (gateway:53)
	last    netdns.Records
	lastTTL time.Duration
}

// dnsListener is one DNS server on one gateway.
type dnsListener struct {
	srv    *netdns.Server
	cancel context.CancelFunc
}

// dnsScope answers which networks a querier is on: those of this node's
// task that holds its address (every task queries its own node's DNS), else
// the network whose subnet holds it. The host and anything outside every
// network see every network.
type dnsScope struct {
	tasks    *network.Network
	networks []network.Def
}

func (d *dnsScope) of(src netip.Addr) ([]string, bool) {
	if nets, ok := d.tasks.NetworksOf(src); ok {
		return nets, true
	}
	for _, n := range d.networks {
		if n.Subnet.Contains(src) {
			return []string{n.ID}, true
		}
	}
	return nil, false
}

// openServiceNet starts the node's service networking; Run-time pieces
// stop with ctx.
func openServiceNet(ctx context.Context, netw *network.Network, upstreams []string, log *slog.Logger) (*serviceNet, error) {
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
		upstreams: upstreams,
		dns:       map[string]*dnsListener{},
	}
	s.scope.Store(&dnsScope{tasks: netw})
	netw.OnTasksChanged(s.endpoints.SetClients)
	go s.endpoints.Run(ctx, endpoints.Sinks{DNS: s.swapDNS, VIPs: s.lb.Apply, Mesh: s.mesh.Update, PortErrors: s.setPortErrors}, log)
	return s, nil
}

// deregisterDelay is how long a task that may receive traffic runs on
// after it has left the endpoints, before its stop signal.
func (s *serviceNet) deregisterDelay() time.Duration {
	return s.endpoints.TTL() + propagation
}

// swapDNS gives the DNS servers their new table.
func (s *serviceNet) swapDNS(snap endpoints.Snapshot) {
	r := snap.DNS()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.lastTTL = r, snap.TTL
	table := netdns.NewTableTTL(r, snap.TTL)
	for _, l := range s.dns {
		l.srv.Swap(table)
	}
}

// setNetworks follows the node's network slices: a DNS server runs on the
// gateway of every slice, where the resolv.conf of the tasks on it points.
// Servers of slices that are gone stop.
func (s *serviceNet) setNetworks(defs []network.Def, netw *network.Network) {
	s.scope.Store(&dnsScope{tasks: netw, networks: defs})

	want := map[string]bool{}
	for _, d := range defs {
		if gw, ok := netw.Gateway(d.ID); ok {
			want[netip.AddrPortFrom(gw, 53).String()] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, l := range s.dns {
		if !want[addr] {
			l.cancel()
			delete(s.dns, addr)
		}
	}
	for addr := range want {
		if s.dns[addr] != nil {
			continue
		}
		srv, err := netdns.NewServer(netdns.Config{Addrs: []string{addr}, TTL: netdns.DefaultTTL, Scope: s.scopeOf, Upstreams: s.upstreams, Logger: s.log})
		if err != nil {
			s.log.Warn("cannot start a DNS server for the node's tasks", "addr", addr, "err", err)
			continue
		}
		srv.Swap(netdns.NewTableTTL(s.last, s.lastTTL))
		ctx, cancel := context.WithCancel(s.ctx)
		s.dns[addr] = &dnsListener{srv: srv, cancel: cancel}
		go func() {
			if err := srv.Run(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("a DNS server of the node stopped", "addr", addr, "err", err)
			}
		}()
	}
}

func (s *serviceNet) scopeOf(src netip.Addr) ([]string, bool) { return s.scope.Load().of(src) }

func (s *serviceNet) setPortErrors(pe []*shoalpb.PortError) { s.portErrs.Store(&pe) }

// portErrors is the current set of ingress ports the mesh cannot serve.
func (s *serviceNet) portErrors() []*shoalpb.PortError {
	if pe := s.portErrs.Load(); pe != nil {
		return *pe
	}
	return nil
}

// portErrors is the agent's PortErrors: nil without service networking.
// The service networking outlives the agent (a role change makes a new
// one), so the agent asks for the set rather than being told it.
func (tr *taskRuntime) portErrors() func() []*shoalpb.PortError {
	if tr.svcnet == nil {
		return nil
	}
	return tr.svcnet.portErrors
}

// dnsServer returns one of the node's DNS servers, nil while none runs:
// they all answer from the same table and scope, so any one answers as the
// node does (for `shoal dns lookup`).
func (s *serviceNet) dnsServer() *netdns.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.dns {
		return l.srv
	}
	return nil
}

// vipWait bounds how long a task's start waits for the VIP rules to know
// it as a client.
const vipWait = 3 * time.Second

// taskNetwork is the node's task network as the runtime sees it: Attach
// returns once the VIP rules know the task as a client (they send each of
// the node's tasks to a network it shares with the service), so that its
// first connection to a VIP is balanced, not refused.
type taskNetwork struct {
	*network.Network
	s *serviceNet
}

func (tn taskNetwork) Attach(ctx context.Context, t *shoalpb.Task) (runtime.Attachment, error) {
	att, err := tn.Network.Attach(ctx, t)
	if err != nil {
		return att, err
	}
	wctx, cancel := context.WithTimeout(ctx, vipWait)
	defer cancel()
	if err := tn.s.endpoints.WaitVIPs(wctx); err != nil {
		tn.s.log.Warn("starting a task before the VIP rules know it; its first VIP connections may be refused", "task", t.GetId(), "err", err)
	}
	return att, nil
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
