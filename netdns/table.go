package netdns

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Records is everything the node's DNS answers from, rebuilt whole by the
// agent on each change.
type Records struct {
	Services []Service
}

// Service is one service as the node's DNS sees it.
type Service struct {
	ID string
	// Names are every name the service answers to, lower-case, without a
	// trailing dot: e.g. "web", "web.words", "words_web".
	Names []string
	// DNSRR is endpoint mode dnsrr: the names answer with the ready tasks'
	// addresses instead of the VIP.
	DNSRR bool
	// Ports are the declared ports; those with a Name get SRV records.
	Ports    []Port
	Networks []Attachment
	// Tasks are the READY tasks only (the agent filters).
	Tasks []Task
}

// Attachment is a service's presence on one network.
type Attachment struct {
	Network string     // network ID
	VIP     netip.Addr // invalid (zero) in dnsrr mode
	// Aliases are extra names of the service on this network only.
	Aliases []string
}

// Task is one ready task of a service.
type Task struct {
	// Name is "<service>.<slot>.<task-id>" (global services:
	// "<service>.<node-id>.<task-id>").
	Name  string
	Addrs map[string]netip.Addr // network ID -> the task's address on it
}

// Port is a declared port of a service.
type Port struct {
	Name     string // may be empty (no SRV)
	Protocol string // "tcp" or "udp"
	Port     uint16 // the target (container) port
}

// DefaultTTL is the TTL of cluster answers when Config.TTL is not set.
const DefaultTTL = time.Second

// Table is an immutable, indexed form of Records, built off the serving
// path: every answer record is built here once, so serving a query only
// selects and copies pointers to them. A Table is never changed after
// NewTable returns; the agent builds a new one and swaps it in.
type Table struct {
	records Records
	ttl     uint32
	// ownTTL: built by NewTableTTL, served with its own TTL.
	ownTTL bool
	// names maps a lower-case fully qualified name (with the trailing dot,
	// as it comes off the wire) to what it answers.
	names map[string]*entry
}

// entry is everything one name answers, per network.
type entry struct {
	sets []*rrset
}

// rrset is a name's records on one network.
type rrset struct {
	network string
	a, aaaa []dns.RR
	srv     []dns.RR
	ptr     []dns.RR
	// extra is the additional section of an SRV answer: the targets'
	// address records.
	extra []dns.RR
}

func (s *rrset) byType(qtype uint16) []dns.RR {
	switch qtype {
	case dns.TypeA:
		return s.a
	case dns.TypeAAAA:
		return s.aaaa
	case dns.TypeSRV:
		return s.srv
	case dns.TypePTR:
		return s.ptr
	}
	return nil
}

// NewTable indexes r with the default TTL (1 s). Server.Swap rebuilds such
// a table when Config.TTL differs; NewTableTTL builds one with its own TTL
// (rounded up to whole seconds), which Swap keeps.
func NewTable(r Records) *Table {
	return newTable(r, DefaultTTL)
}

// NewTableTTL indexes r with the given TTL, which a Server keeps: for a
// TTL that changes while the server runs (the cluster's DNS TTL).
func NewTableTTL(r Records, ttl time.Duration) *Table {
	t := newTable(r, ttl)
	t.ownTTL = true
	return t
}

// withTTL returns t, or t rebuilt with another TTL.
func (t *Table) withTTL(ttl time.Duration) *Table {
	if t == nil || t.ownTTL || t.ttl == ttlSeconds(ttl) {
		return t
	}
	return newTable(t.records, ttl)
}

func ttlSeconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	return uint32((d + time.Second - 1) / time.Second)
}

// builder collects records per name and network while a Table is built.
type builder struct {
	t *Table
}

func newTable(r Records, ttl time.Duration) *Table {
	t := &Table{records: r, ttl: ttlSeconds(ttl), names: map[string]*entry{}}
	// Sized up front: growing the map was a good part of the build.
	names := 0
	for i := range r.Services {
		svc := &r.Services[i]
		aliases := 0
		for _, att := range svc.Networks {
			aliases += len(att.Aliases)
		}
		names += (len(svc.Names)*len(svc.Networks)+aliases)*(2+len(svc.Ports)) + 2*len(svc.Tasks) + len(svc.Networks)
	}
	t.names = make(map[string]*entry, names)
	b := &builder{t: t}
	for i := range r.Services {
		b.addService(&r.Services[i])
	}
	for _, e := range t.names {
		for _, s := range e.sets {
			s.dedup()
		}
	}
	return t
}

// fqdn turns a table name ("web.words") into its wire form ("web.words.").
func fqdn(name string) string {
	return dns.Fqdn(strings.ToLower(strings.TrimSuffix(name, ".")))
}

// set returns the rrset of name on network, creating it.
func (b *builder) set(name, network string) *rrset {
	e := b.t.names[name]
	if e == nil {
		e = &entry{}
		b.t.names[name] = e
	}
	for _, s := range e.sets {
		if s.network == network {
			return s
		}
	}
	s := &rrset{network: network}
	e.sets = append(e.sets, s)
	return s
}

func (b *builder) addAddr(name, network string, addr netip.Addr) {
	if !addr.IsValid() {
		return
	}
	s := b.set(name, network)
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: b.t.ttl}
	if addr.Is4() || addr.Is4In6() {
		hdr.Rrtype = dns.TypeA
		s.a = append(s.a, &dns.A{Hdr: hdr, A: addr.Unmap().AsSlice()})
		return
	}
	hdr.Rrtype = dns.TypeAAAA
	s.aaaa = append(s.aaaa, &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
}

func (b *builder) addPTR(addr netip.Addr, network, target string) {
	if !addr.IsValid() {
		return
	}
	rev, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return
	}
	s := b.set(rev, network)
	s.ptr = append(s.ptr, &dns.PTR{Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: b.t.ttl}, Ptr: target})
}

// addService indexes one service: its names (VIP or, in dnsrr mode, the
// tasks), tasks.<name>, its tasks' names, its aliases per network, SRV
// records of its named ports, and PTR records of its VIPs and tasks.
func (b *builder) addService(svc *Service) {
	var names []string
	for _, n := range svc.Names {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, fqdn(n))
		}
	}
	for _, att := range svc.Networks {
		for _, n := range names {
			b.addServiceName(svc, att, n)
		}
		for _, alias := range att.Aliases {
			if alias = strings.TrimSpace(alias); alias != "" {
				b.addServiceName(svc, att, fqdn(alias))
			}
		}
		if len(names) > 0 && att.VIP.IsValid() {
			b.addPTR(att.VIP, att.Network, names[0])
		}
	}
	for _, task := range svc.Tasks {
		if task.Name == "" {
			continue
		}
		tn := fqdn(task.Name)
		for _, att := range svc.Networks {
			addr, ok := task.Addrs[att.Network]
			if !ok {
				continue
			}
			b.set(tn, att.Network)
			b.addAddr(tn, att.Network, addr)
			b.addPTR(addr, att.Network, tn)
		}
	}
}

// addServiceName makes one name of the service answer on one network:
// name, tasks.name and the SRV names of its ports.
func (b *builder) addServiceName(svc *Service, att Attachment, name string) {
	// The name exists on this network even with nothing to answer (dnsrr
	// with no ready task): it answers NODATA, not NXDOMAIN, and is never
	// forwarded.
	b.set(name, att.Network)
	tasksName := "tasks." + name
	b.set(tasksName, att.Network)
	if svc.DNSRR || !att.VIP.IsValid() {
		for _, task := range svc.Tasks {
			b.addAddr(name, att.Network, task.Addrs[att.Network])
		}
	} else {
		b.addAddr(name, att.Network, att.VIP)
	}
	for _, task := range svc.Tasks {
		b.addAddr(tasksName, att.Network, task.Addrs[att.Network])
	}
	for _, p := range svc.Ports {
		if p.Name == "" {
			continue
		}
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		srvName := "_" + strings.ToLower(p.Name) + "._" + proto + "." + name
		s := b.set(srvName, att.Network)
		for _, task := range svc.Tasks {
			addr, ok := task.Addrs[att.Network]
			if !ok || task.Name == "" || !addr.IsValid() {
				continue
			}
			target := fqdn(task.Name)
			s.srv = append(s.srv, &dns.SRV{
				Hdr:      dns.RR_Header{Name: srvName, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: b.t.ttl},
				Priority: 0, Weight: 1, Port: p.Port, Target: target,
			})
			hdr := dns.RR_Header{Name: target, Class: dns.ClassINET, Ttl: b.t.ttl}
			if addr.Is4() || addr.Is4In6() {
				hdr.Rrtype = dns.TypeA
				s.extra = append(s.extra, &dns.A{Hdr: hdr, A: addr.Unmap().AsSlice()})
			} else {
				hdr.Rrtype = dns.TypeAAAA
				s.extra = append(s.extra, &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
			}
		}
	}
}

// lookup finds a lower-case fully qualified name.
func (t *Table) lookup(name string) *entry {
	if t == nil {
		return nil
	}
	return t.names[name]
}

// Len is the number of names the table answers, for logs.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.names)
}
