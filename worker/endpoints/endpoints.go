// Package endpoints is the node's copy of the cluster's service endpoints:
// the services and their ready tasks, as the leader's Endpoints stream sends
// them (docs/networking.md). The agent applies each message; Run turns
// every change into what the node serves: the DNS table (netdns), the VIP
// rules (worker/lb) and the routing mesh's ports (worker/mesh). A burst of
// changes costs one rebuild: Run reads the table whole after each wake-up,
// never message by message.
package endpoints

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"shoal/netdns"
	shoalpb "shoal/proto"
	"shoal/worker/lb"
	"shoal/worker/mesh"
	"shoal/worker/network"
)

// defaultDrain is a task's stop grace period when its spec sets none
// (the executor's default).
const defaultDrain = 10 * time.Second

// Table holds the endpoints. Its methods are safe for concurrent use;
// Apply never blocks.
type Table struct {
	mu       sync.Mutex
	services map[string]*shoalpb.ServiceEndpoints
	tasks    map[string]*shoalpb.EndpointTask
	ttlMs    int64
	clients  map[netip.Addr]network.TaskAddr // the node's tasks (SetClients)
	synced   bool                            // a complete set has arrived
	// gen counts the changes; vipsGen is the gen of the last snapshot the
	// VIP sink applied (vipsApplied is closed and replaced when it moves).
	gen         uint64
	vipsGen     uint64
	vipsApplied chan struct{}
	watchers    []chan struct{} // one per sink loop (cap 1): the table changed
}

// New returns an empty table.
func New() *Table {
	return &Table{
		services:    map[string]*shoalpb.ServiceEndpoints{},
		tasks:       map[string]*shoalpb.EndpointTask{},
		ttlMs:       1000,
		vipsApplied: make(chan struct{}),
	}
}

// Apply records one message of the Endpoints stream.
func (t *Table) Apply(msg *shoalpb.EndpointsMessage) {
	t.mu.Lock()
	if msg.GetComplete() {
		t.services = map[string]*shoalpb.ServiceEndpoints{}
		t.tasks = map[string]*shoalpb.EndpointTask{}
		t.synced = true
	}
	for _, s := range msg.GetServices() {
		t.services[s.GetServiceId()] = s
	}
	for _, id := range msg.GetRemoveServices() {
		delete(t.services, id)
	}
	for _, et := range msg.GetTasks() {
		t.tasks[et.GetTaskId()] = et
	}
	for _, id := range msg.GetRemoveTasks() {
		delete(t.tasks, id)
	}
	if ttl := msg.GetDnsTtlMs(); ttl != 0 {
		t.ttlMs = ttl
	}
	t.notifyLocked()
	t.mu.Unlock()
}

// SetClients records the addresses of the node's own tasks, the clients
// of the VIP rules (a task's connection to a VIP is NATed on its node).
func (t *Table) SetClients(clients map[netip.Addr]network.TaskAddr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clients = clients
	t.notifyLocked()
}

// WaitVIPs waits until the VIP rules hold every change made before the
// call, or ctx ends. Rules are applied only once the first complete set
// of endpoints has arrived.
func (t *Table) WaitVIPs(ctx context.Context) error {
	t.mu.Lock()
	gen := t.gen
	t.mu.Unlock()
	for {
		t.mu.Lock()
		done, applied := t.vipsGen >= gen, t.vipsApplied
		t.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-applied:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// vipsDone records that the VIP sink applied the snapshot of change gen.
func (t *Table) vipsDone(gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen > t.vipsGen {
		t.vipsGen = gen
		close(t.vipsApplied)
		t.vipsApplied = make(chan struct{})
	}
}

func (t *Table) notifyLocked() {
	t.gen++
	for _, w := range t.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// retryAfter is how soon Run tries again after a sink failed.
const retryAfter = time.Second

// meshRetry is how often Run tries again to listen on published ports the
// routing mesh could not listen on: the mesh itself never retries, and a
// port another process holds is freed without any change to the table.
// Each try is a listen per such port (and a log line from the mesh).
const meshRetry = 3 * time.Second

// TTL is the cluster's DNS TTL.
func (t *Table) TTL() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ttlMs < 0 {
		return 0
	}
	return time.Duration(t.ttlMs) * time.Millisecond
}

// Snapshot is a consistent copy of the table: services sorted by name, each
// with its endpoints sorted by task ID.
type Snapshot struct {
	Services []Service
	TTL      time.Duration
	// Clients are the node's tasks' addresses.
	Clients map[netip.Addr]network.TaskAddr
	// Gen is the number of the last change the snapshot holds.
	Gen uint64
}

// Service is one service with its ready tasks.
type Service struct {
	*shoalpb.ServiceEndpoints
	Tasks []*shoalpb.EndpointTask
}

// Snapshot copies the table. Tasks whose service is unknown (a message
// about the service still to come) are left out.
func (t *Table) Snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	byService := make(map[string][]*shoalpb.EndpointTask, len(t.services))
	for _, et := range t.tasks {
		byService[et.GetServiceId()] = append(byService[et.GetServiceId()], et)
	}
	snap := Snapshot{Services: make([]Service, 0, len(t.services)), Clients: t.clients, Gen: t.gen}
	if t.ttlMs > 0 {
		snap.TTL = time.Duration(t.ttlMs) * time.Millisecond
	}
	for id, se := range t.services {
		tasks := byService[id]
		sort.Slice(tasks, func(i, j int) bool { return tasks[i].GetTaskId() < tasks[j].GetTaskId() })
		snap.Services = append(snap.Services, Service{ServiceEndpoints: se, Tasks: tasks})
	}
	sort.Slice(snap.Services, func(i, j int) bool { return snap.Services[i].GetName() < snap.Services[j].GetName() })
	return snap
}

// Names are the DNS names of a service: its name and, in a stack,
// <service>.<stack> (the service's name without the "<stack>_" prefix
// that stack deploy gives it).
func Names(se *shoalpb.ServiceEndpoints) []string {
	name := strings.ToLower(se.GetName())
	names := []string{name}
	if stack := strings.ToLower(se.GetStack()); stack != "" {
		short := strings.TrimPrefix(name, stack+"_")
		names = append(names, short+"."+stack)
	}
	return names
}

// DNS is the snapshot as the node's DNS records.
func (s Snapshot) DNS() netdns.Records {
	r := netdns.Records{Services: make([]netdns.Service, 0, len(s.Services))}
	for _, svc := range s.Services {
		ds := netdns.Service{
			ID:    svc.GetServiceId(),
			Names: Names(svc.ServiceEndpoints),
			DNSRR: svc.GetMode() == shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR,
		}
		vip, err := netip.ParseAddr(svc.GetVip())
		if err != nil || ds.DNSRR {
			vip = netip.Addr{}
		}
		for _, n := range svc.GetNetworks() {
			ds.Networks = append(ds.Networks, netdns.Attachment{Network: n.GetTarget(), VIP: vip, Aliases: lower(n.GetAliases())})
		}
		for _, p := range svc.GetPorts() {
			ds.Ports = append(ds.Ports, netdns.Port{Name: p.GetName(), Protocol: p.GetProtocol(), Port: uint16(p.GetTargetPort())})
		}
		for _, et := range svc.Tasks {
			if addrs := svc.taskAddrs(et); len(addrs) > 0 {
				ds.Tasks = append(ds.Tasks, netdns.Task{Name: et.GetName(), Addrs: addrs})
			}
		}
		r.Services = append(r.Services, ds)
	}
	return r
}

// taskAddrs are et's addresses by network ID. A task from a leader that
// sends no per-network addresses is on the service's first network.
func (svc Service) taskAddrs(et *shoalpb.EndpointTask) map[string]netip.Addr {
	addrs := map[string]netip.Addr{}
	for _, n := range et.GetNetworks() {
		if a, err := netip.ParseAddr(n.GetAddress()); err == nil {
			addrs[n.GetNetworkId()] = a
		}
	}
	if len(et.GetNetworks()) == 0 && len(svc.GetNetworks()) > 0 {
		if a, err := netip.ParseAddr(et.GetAddress()); err == nil {
			addrs[svc.GetNetworks()[0].GetTarget()] = a
		}
	}
	return addrs
}

func lower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	return out
}

// VIPs is the snapshot as the node's VIP rules: every service with a VIP,
// balanced over its ready tasks (none: connections are refused). Each of
// the node's tasks is sent to the tasks' addresses on a network it shares
// with the service (the network of its own address when the service is on
// it, else the first of the task's networks that the service is on), and
// refused when it shares none; the node itself goes to the tasks' primary
// addresses.
func (s Snapshot) VIPs() []lb.Service {
	var out []lb.Service
	clients := slices.SortedFunc(maps.Keys(s.Clients), netip.Addr.Compare)
	for _, svc := range s.Services {
		vip, err := netip.ParseAddr(svc.GetVip())
		if err != nil || svc.GetMode() == shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR {
			continue
		}
		ls := lb.Service{ID: svc.GetServiceId(), VIP: vip}
		byNet := map[string][]netip.Addr{}
		for _, et := range svc.Tasks {
			if a, err := netip.ParseAddr(et.GetAddress()); err == nil {
				ls.Backends = append(ls.Backends, a)
			}
			for id, a := range svc.taskAddrs(et) {
				byNet[id] = append(byNet[id], a)
			}
		}
		on := map[string]bool{}
		for _, n := range svc.GetNetworks() {
			on[n.GetTarget()] = true
		}
		for _, c := range clients {
			ta := s.Clients[c]
			shared := ""
			if on[ta.Network] {
				shared = ta.Network
			} else if i := slices.IndexFunc(ta.Networks, func(id string) bool { return on[id] }); i >= 0 {
				shared = ta.Networks[i]
			}
			if shared == "" {
				continue // no Source: refused
			}
			ls.Sources = append(ls.Sources, lb.Source{From: netip.PrefixFrom(c, 32), Backends: byNet[shared]})
		}
		out = append(out, ls)
	}
	return out
}

// Ingress is the snapshot as the routing mesh's ports: every port
// published in ingress mode, over its service's ready tasks anywhere.
func (s Snapshot) Ingress() []mesh.Port {
	var out []mesh.Port
	for _, svc := range s.Services {
		for _, p := range svc.GetPorts() {
			if p.GetMode() != shoalpb.PublishMode_PUBLISH_MODE_INGRESS || p.GetPublishedPort() == 0 {
				continue
			}
			mp := mesh.Port{
				Published: uint16(p.GetPublishedPort()),
				Protocol:  p.GetProtocol(),
				Mode:      meshMode(p.GetMesh()),
				Proxy:     proxyProtocol(p.GetProxyProtocol()),
				Service:   svc.GetName(),
			}
			for _, et := range svc.Tasks {
				a, err := netip.ParseAddr(et.GetAddress())
				if err != nil {
					continue
				}
				drain := time.Duration(et.GetDrainMs()) * time.Millisecond
				if drain <= 0 {
					drain = defaultDrain
				}
				mp.Backends = append(mp.Backends, mesh.Backend{ID: et.GetTaskId(), Addr: netip.AddrPortFrom(a, uint16(p.GetTargetPort())), Drain: drain})
			}
			out = append(out, mp)
		}
	}
	return out
}

func meshMode(m shoalpb.MeshMode) mesh.Mode {
	if m == shoalpb.MeshMode_MESH_MODE_HTTP {
		return mesh.ModeHTTP
	}
	return mesh.ModeTCP
}

func proxyProtocol(p shoalpb.ProxyProtocol) mesh.ProxyProtocol {
	switch p {
	case shoalpb.ProxyProtocol_PROXY_PROTOCOL_V1:
		return mesh.ProxyV1
	case shoalpb.ProxyProtocol_PROXY_PROTOCOL_V2:
		return mesh.ProxyV2
	}
	return mesh.ProxyNone
}

// Sinks are what Run keeps in step with the table; a nil one is skipped.
type Sinks struct {
	// DNS takes the snapshot whole: the records (Snapshot.DNS) and the TTL.
	DNS  func(Snapshot)
	VIPs func([]lb.Service) error
	Mesh func([]mesh.Port) map[uint16]error
	// PortErrors is told the complete set of ingress ports Mesh could not
	// serve, sorted by port (empty: it serves them all), each time the set
	// changes, from the Mesh loop (it must not block). The node's agent
	// reports it to the leader (NodeStatus.port_errors).
	PortErrors func([]*shoalpb.PortError)
}

// Run hands every change of the table to sinks until ctx ends, each sink
// on its own loop: a slow one (nft under load takes a second) never holds
// back another (DNS swaps in microseconds). Nothing is served before the
// first complete set arrives: an empty table would answer NXDOMAIN for
// names that exist and refuse VIP connections.
func (t *Table) Run(ctx context.Context, sinks Sinks, log *slog.Logger) {
	var loops sync.WaitGroup
	if sinks.DNS != nil {
		loops.Go(func() {
			t.follow(ctx, func(snap Snapshot) bool { sinks.DNS(snap); return true })
		})
	}
	if sinks.VIPs != nil {
		loops.Go(func() {
			t.follow(ctx, func(snap Snapshot) bool {
				if err := sinks.VIPs(snap.VIPs()); err != nil {
					log.Warn("updating service VIP rules failed; retrying", "err", err)
					return false
				}
				t.vipsDone(snap.Gen)
				return true
			})
		})
	}
	if sinks.Mesh != nil {
		loops.Go(func() {
			var last []*shoalpb.PortError // logged and reported once until they change
			reported := false
			t.followEvery(ctx, meshRetry, func(snap Snapshot) bool {
				ports := snap.Ingress()
				errs := sinks.Mesh(ports)
				cur := portErrors(ports, errs)
				for _, pe := range cur {
					if !slices.ContainsFunc(last, func(o *shoalpb.PortError) bool { return samePortError(o, pe) }) {
						log.Warn("routing mesh cannot publish a port on this node", "port", pe.GetPort(), "err", pe.GetError())
					}
				}
				if sinks.PortErrors != nil && (!reported || !slices.EqualFunc(cur, last, samePortError)) {
					sinks.PortErrors(cur)
					reported = true
				}
				last = cur
				// A port that could not listen may be freed at any time;
				// one the mesh does not support never will be.
				for _, err := range errs {
					if !errors.Is(err, mesh.ErrUnsupported) {
						return false
					}
				}
				return true
			})
		})
	}
	loops.Wait()
}

// portErrors turns the mesh's per-port errors into the sorted list the
// agent reports, taking each port's protocol from ports.
func portErrors(ports []mesh.Port, errs map[uint16]error) []*shoalpb.PortError {
	out := make([]*shoalpb.PortError, 0, len(errs))
	for num, err := range errs {
		proto := "tcp"
		for _, p := range ports {
			if p.Published == num && p.Protocol != "" {
				proto = p.Protocol
				break
			}
		}
		out = append(out, &shoalpb.PortError{Port: uint32(num), Protocol: proto, Error: err.Error()})
	}
	slices.SortFunc(out, func(a, b *shoalpb.PortError) int { return int(a.GetPort()) - int(b.GetPort()) })
	return out
}

func samePortError(a, b *shoalpb.PortError) bool {
	return a.GetPort() == b.GetPort() && a.GetProtocol() == b.GetProtocol() && a.GetError() == b.GetError()
}

// follow calls apply with a new snapshot after every change (coalesced)
// until ctx ends; when apply fails it is called again after retryAfter.
func (t *Table) follow(ctx context.Context, apply func(Snapshot) bool) {
	t.followEvery(ctx, retryAfter, apply)
}

// followEvery is follow with a retry interval of its own.
func (t *Table) followEvery(ctx context.Context, retryEvery time.Duration, apply func(Snapshot) bool) {
	// The first look is due at once. The token goes in before the channel
	// is registered: a change notified in between fills the one slot, and a
	// send after it would block this loop, its only reader, for good.
	changed := make(chan struct{}, 1)
	changed <- struct{}{}
	t.mu.Lock()
	t.watchers = append(t.watchers, changed)
	t.mu.Unlock()
	var retry <-chan time.Time
	var done uint64 // the change last applied; a token for it is stale
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry:
		}
		retry = nil
		t.mu.Lock()
		synced := t.synced
		t.mu.Unlock()
		if !synced {
			continue
		}
		snap := t.Snapshot()
		if snap.Gen == done {
			continue
		}
		if apply(snap) {
			done = snap.Gen
		} else {
			retry = time.After(retryEvery)
		}
	}
}
