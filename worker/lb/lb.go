package lb

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	// ErrNoNft: the nft command is not installed.
	ErrNoNft = errors.New("lb: the nft command was not found: install the nftables package (scripts/install-deps.sh does)")
	// ErrInvalidService: a Service given to Apply is malformed; the error
	// names the service and the field. Apply changes nothing.
	ErrInvalidService = errors.New("lb: invalid service")
	// ErrNft: nft refused or failed a transaction; its output is in the
	// error.
	ErrNft = errors.New("lb: nft failed")
	// ErrConntrack: the rules were applied but stale UDP conntrack entries
	// could not all be deleted.
	ErrConntrack = errors.New("lb: deleting conntrack entries failed")
)

// Service is one service's virtual IP and the addresses of its ready tasks
// for each client.
type Service struct {
	// ID names the service; it is hashed into the names of the service's
	// nftables chains.
	ID string
	// VIP is the service's virtual IPv4 address.
	VIP netip.Addr
	// Backends serve the node's own connections: the service's ready
	// tasks' addresses, on this node or another. Empty: those
	// connections are rejected at once (TCP reset, ICMP port unreachable
	// otherwise), never black-holed.
	Backends []netip.Addr
	// Sources send a task whose address is in From to its backends: tasks
	// on different networks cannot reach each other, so a client must get
	// its backend's address on a network it shares with the service. A
	// task's connection in no Source, or in one without backends, is
	// rejected at once.
	Sources []Source
}

// Source is a set of clients of a service and the service's backends for
// them.
type Source struct {
	// From is the clients' IPv4 prefix (a task's address as a /32); the
	// Sources of one service must not overlap.
	From netip.Prefix
	// Backends are the addresses of the service's ready tasks on a network
	// the clients are on. Empty: their connections are rejected at once.
	Backends []netip.Addr
}

// Config configures an LB.
type Config struct {
	// Table is the nftables table (family ip) the LB owns, unique per
	// node on a machine, e.g. "shoal-1a2b3c4d". Letters, digits, '-' and
	// '_' only.
	Table string
	// NetNS, when set, is the path of the network namespace (such as
	// /run/netns/x) whose rules and conntrack table the LB manages;
	// empty means the calling process's own.
	NetNS  string
	Logger *slog.Logger
}

// LB keeps one node's service VIP rules in its nftables table. Its methods
// are safe for concurrent use; they serialise on a mutex.
type LB struct {
	table string
	netns string
	nft   string // path of the nft binary
	log   *slog.Logger

	mu sync.Mutex
	// applied is what the table holds, by service ID, once synced; a
	// failed transaction or a table found at New makes synced false and
	// the next Apply rebuilds the whole table in one transaction.
	applied map[string]service
	synced  bool
	// transactions counts nft runs and rebuilds whole-table replacements,
	// so tests can see a no-op or an incremental Apply.
	transactions, rebuilds int
}

// service is a validated Service: backends sorted and unique, sources
// sorted by prefix, chain named.
type service struct {
	id       string
	vip      netip.Addr
	backends []netip.Addr
	sources  []source
	chain    string
}

// source is a validated Source: prefix masked, backends sorted and unique,
// chain named after the service's chain and the prefix.
type source struct {
	from     netip.Prefix
	backends []netip.Addr
	chain    string
}

func (s service) equal(o service) bool {
	return s.vip == o.vip && slices.Equal(s.backends, o.backends) &&
		slices.EqualFunc(s.sources, o.sources, func(a, b source) bool {
			return a.from == b.from && slices.Equal(a.backends, b.backends)
		})
}

// allBackends calls fn for every backend of s, of every source.
func (s service) allBackends(fn func(netip.Addr)) {
	for _, a := range s.backends {
		fn(a)
	}
	for _, src := range s.sources {
		for _, a := range src.backends {
			fn(a)
		}
	}
}

var tableName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// New finds nft and makes sure the table exists. A table left by an earlier
// run is kept as it is, so its VIPs keep working until the first Apply
// replaces the whole table in one transaction.
func New(cfg Config) (*LB, error) {
	if !tableName.MatchString(cfg.Table) {
		return nil, fmt.Errorf("lb: Config.Table %q: give a name of letters, digits, '-' and '_' starting with a letter, e.g. shoal-1a2b3c4d", cfg.Table)
	}
	bin, err := findNft()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	l := &LB{table: cfg.Table, netns: cfg.NetNS, nft: bin, log: log.With("table", cfg.Table)}
	out, err := l.run([]string{"list", "tables", "ip"}, nil)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(strings.Fields(out), cfg.Table) {
		l.mu.Lock()
		err = l.rebuild(nil)
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	l.warnWithoutBridgeNetfilter()
	return l, nil
}

func findNft() (string, error) {
	if p, err := exec.LookPath("nft"); err == nil {
		return p, nil
	}
	// PATH may lack the sbin directories for a daemon started by hand.
	for _, p := range []string{"/usr/sbin/nft", "/sbin/nft"} {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNoNft
}

// warnWithoutBridgeNetfilter logs when bridged traffic skips netfilter: a
// reply from a task to a client task on the same bridge then goes straight
// back at layer 2, is never un-DNATed, and the client resets it.
func (l *LB) warnWithoutBridgeNetfilter() {
	var v []byte
	_ = l.inNS(func() error {
		var err error
		v, err = os.ReadFile(filepath.Join("/proc/sys/net/bridge", "bridge-nf-call-iptables"))
		return err
	})
	if strings.TrimSpace(string(v)) != "1" {
		l.log.Warn("bridged traffic bypasses netfilter: tasks cannot reach a service VIP whose backend is on their own bridge; load it with `modprobe br_netfilter` and set net.bridge.bridge-nf-call-iptables=1")
	}
}

// Apply makes the table hold exactly services, in one nft transaction: no
// connection sees a VIP without its rule or a mix of old and new backends.
// Only services that changed since the last Apply are written, and an
// Apply that changes nothing does not run nft. Connections already made
// keep their backend through conntrack, except UDP flows to a backend
// that was removed, whose entries are deleted so the next datagram picks
// a ready one. A malformed service fails Apply with ErrInvalidService
// before anything changes. ErrConntrack means the rules were applied.
func (l *LB) Apply(services []Service) error {
	want, err := validate(services)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	start := time.Now()
	old, wasSynced := l.applied, l.synced
	if !l.synced {
		if err := l.rebuild(want); err != nil {
			return err
		}
	} else {
		script := updateScript(l.table, l.applied, want)
		if script == "" {
			return nil
		}
		if err := l.transact(script); err != nil {
			l.log.Warn("incremental update refused; rebuilding the table", "err", err)
			if err := l.rebuild(want); err != nil {
				return err
			}
		} else {
			l.applied = want
		}
	}
	l.log.Debug("service VIPs applied", "services", len(want), "full", !wasSynced, "took", time.Since(start))
	if !wasSynced {
		// What the table held before is unknown: no flow to delete is known.
		return nil
	}
	if err := l.deleteUDPFlows(removedBackends(old, want)); err != nil {
		return fmt.Errorf("%w: %w", ErrConntrack, err)
	}
	return nil
}

// rebuild replaces the whole table with one holding want. Callers hold mu.
func (l *LB) rebuild(want map[string]service) error {
	l.rebuilds++
	if err := l.transact(fullScript(l.table, want)); err != nil {
		l.synced, l.applied = false, nil
		return err
	}
	l.synced, l.applied = true, want
	return nil
}

// Destroy deletes the table; it is no error if there is none. An Apply
// afterwards makes the table again.
func (l *LB) Destroy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.synced, l.applied = false, nil
	// Adding first makes the delete succeed whether the table is there or
	// not, in one transaction.
	return l.transact(fmt.Sprintf("add table ip %s\ndelete table ip %s\n", l.table, l.table))
}

// validate checks services and returns them by ID, normalised.
func validate(services []Service) (map[string]service, error) {
	want := make(map[string]service, len(services))
	vips := make(map[netip.Addr]string, len(services))
	chains := make(map[string]string, len(services))
	for _, s := range services {
		if s.ID == "" {
			return nil, fmt.Errorf("%w: a service has an empty ID (VIP %v)", ErrInvalidService, s.VIP)
		}
		if _, dup := want[s.ID]; dup {
			return nil, fmt.Errorf("%w: service %q is given twice: give each service once", ErrInvalidService, s.ID)
		}
		vip := s.VIP.Unmap()
		if !vip.Is4() || vip.IsUnspecified() {
			return nil, fmt.Errorf("%w: service %q: VIP %q is not an IPv4 address: give the VIP its allocator assigned", ErrInvalidService, s.ID, s.VIP)
		}
		if other, dup := vips[vip]; dup {
			return nil, fmt.Errorf("%w: services %q and %q have the same VIP %s: each service needs its own", ErrInvalidService, other, s.ID, vip)
		}
		backends, err := validBackends(s.ID, "Backends", s.Backends, vip)
		if err != nil {
			return nil, err
		}
		c := chainName(s.ID)
		if other, dup := chains[c]; dup {
			return nil, fmt.Errorf("%w: services %q and %q hash to the same chain %s: rename one", ErrInvalidService, other, s.ID, c)
		}
		sources, err := validSources(s.ID, s.Sources, vip, c)
		if err != nil {
			return nil, err
		}
		vips[vip], chains[c] = s.ID, s.ID
		want[s.ID] = service{id: s.ID, vip: vip, backends: backends, sources: sources, chain: c}
	}
	return want, nil
}

// validBackends checks the backends of service id given in field and
// returns them sorted and unique.
func validBackends(id, field string, given []netip.Addr, vip netip.Addr) ([]netip.Addr, error) {
	backends := make([]netip.Addr, 0, len(given))
	for _, b := range given {
		b = b.Unmap()
		if !b.Is4() || b.IsUnspecified() {
			return nil, fmt.Errorf("%w: service %q: %s: backend %q is not an IPv4 address: give the ready tasks' addresses", ErrInvalidService, id, field, b)
		}
		if b == vip {
			return nil, fmt.Errorf("%w: service %q: %s: backend %s is the VIP itself: give the ready tasks' addresses", ErrInvalidService, id, field, b)
		}
		backends = append(backends, b)
	}
	slices.SortFunc(backends, netip.Addr.Compare)
	return slices.Compact(backends), nil
}

// validSources checks the sources of service id and returns them sorted by
// prefix, each with its chain named.
func validSources(id string, given []Source, vip netip.Addr, chain string) ([]source, error) {
	if len(given) == 0 {
		return nil, nil
	}
	sources := make([]source, 0, len(given))
	for i, g := range given {
		from := g.From
		if from.IsValid() && from.Addr().Is4In6() && from.Bits() >= 96 {
			from = netip.PrefixFrom(from.Addr().Unmap(), from.Bits()-96)
		}
		if !from.IsValid() || !from.Addr().Is4() {
			return nil, fmt.Errorf("%w: service %q: Sources[%d].From %q is not an IPv4 prefix: give the network's CIDR, e.g. 10.0.1.0/24", ErrInvalidService, id, i, g.From)
		}
		from = from.Masked()
		backends, err := validBackends(id, fmt.Sprintf("Sources[%d] (%s)", i, from), g.Backends, vip)
		if err != nil {
			return nil, err
		}
		sources = append(sources, source{from: from, backends: backends, chain: sourceChainName(chain, from)})
	}
	slices.SortFunc(sources, func(a, b source) int { return comparePrefix(a.from, b.from) })
	// Sorted by address then length, two overlapping prefixes mean the
	// earlier holds the later and every prefix between: checking
	// neighbours finds any overlap.
	for i := 1; i < len(sources); i++ {
		if a, b := sources[i-1].from, sources[i].from; a.Overlaps(b) {
			return nil, fmt.Errorf("%w: service %q: Sources %s and %s overlap: give each network's CIDR once, and networks that do not overlap", ErrInvalidService, id, a, b)
		}
	}
	return sources, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// chainName names a service's chain from a hash of its ID: IDs may hold
// characters nft names cannot, and the name must not change while the
// service lives.
func chainName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "svc_" + hex.EncodeToString(sum[:8])
}

// sourceChainName names the chain of one source of the service whose chain
// is chain: the prefix in hex keeps the name stable while the source
// lives and valid for nft.
func sourceChainName(chain string, from netip.Prefix) string {
	a := from.Addr().As4()
	return fmt.Sprintf("%s_%s_%d", chain, hex.EncodeToString(a[:]), from.Bits())
}

// flowKey is a VIP and one backend it was DNATed to.
type flowKey struct{ vip, backend netip.Addr }

// removedBackends lists the (VIP, backend) pairs old had and want has not,
// whatever the source: backends removed from a service, and all backends
// of a service removed or moved to another VIP.
func removedBackends(old, want map[string]service) []flowKey {
	kept := make(map[flowKey]bool)
	for _, n := range want {
		n.allBackends(func(b netip.Addr) { kept[flowKey{n.vip, b}] = true })
	}
	var gone []flowKey
	seen := make(map[flowKey]bool)
	for _, o := range old {
		o.allBackends(func(b netip.Addr) {
			if k := (flowKey{o.vip, b}); !kept[k] && !seen[k] {
				seen[k] = true
				gone = append(gone, k)
			}
		})
	}
	return gone
}
