package node

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	"shoal/manager/state"
	"shoal/netdns"
	shoalpb "shoal/proto"
)

// dnsRelayTimeout bounds a relayed lookup: the dial and the other node's
// answer (which may wait for its upstream resolvers, 2 s each).
const dnsRelayTimeout = 15 * time.Second

// dnsDebug serves NodeDNS: `shoal dns lookup` answered as this node's DNS
// server would answer it, or, on a manager, as another node's would.
type dnsDebug struct {
	shoalpb.UnimplementedNodeDNSServer
	nodeID   string
	hostname string
	// server returns one of the node's running DNS servers (they share one
	// table), nil when none runs yet; hasDNS is false on a node without
	// service networking (the process runtime).
	server func() *netdns.Server
	hasDNS bool
	// nodes lists the cluster's nodes; nil on workers, which cannot relay.
	nodes func() []*shoalpb.Node
	// dial connects to another node's cluster port.
	dial func(ctx context.Context, addr string) (*grpc.ClientConn, error)
}

// Lookup implements shoalpb.NodeDNSServer.
func (d *dnsDebug) Lookup(ctx context.Context, req *shoalpb.DNSLookupRequest) (*shoalpb.DNSLookupResponse, error) {
	name, qtype, err := parseDNSQuestion(req.GetName(), req.GetType())
	if err != nil {
		return nil, err
	}
	if ref := req.GetNode(); ref != "" && !d.isSelf(ref) {
		return d.relay(ctx, req, ref)
	}
	if !d.hasDNS {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s runs no cluster DNS (process runtime); ask a node that runs the containerd runtime with --node", d.hostname)
	}
	srv := d.server()
	if srv == nil {
		return nil, status.Errorf(codes.Unavailable, "node %s has no DNS server running yet (its task networks are being set up); try again in a moment", d.hostname)
	}
	var networks []string
	if nw := req.GetNetwork(); nw != "" {
		networks = []string{nw}
	}
	msg, err := srv.Lookup(ctx, name, qtype, networks)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "node %s: %v", d.hostname, err)
	}
	resp := lookupResponse(msg)
	resp.NodeId, resp.Hostname = d.nodeID, d.hostname
	return resp, nil
}

// isSelf reports whether ref names this node. A worker cannot tell whether
// an ID prefix is unique, but one of its own ID can only mean itself or be
// ambiguous, and answering is more useful than refusing.
func (d *dnsDebug) isSelf(ref string) bool {
	if d.nodes != nil {
		return false // a manager resolves ref against every node
	}
	return ref == d.hostname || strings.HasPrefix(d.nodeID, ref)
}

// relay asks the node ref names, over its cluster port.
func (d *dnsDebug) relay(ctx context.Context, req *shoalpb.DNSLookupRequest, ref string) (*shoalpb.DNSLookupResponse, error) {
	if d.nodes == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "--node %s: this node (%s) is a worker and cannot ask other nodes; ask a manager (run the command there, or -H MANAGER_IP:PORT)", ref, d.hostname)
	}
	target, err := findNode(d.nodes(), ref)
	if err != nil {
		return nil, err
	}
	if target.GetId() == d.nodeID {
		local := &shoalpb.DNSLookupRequest{Name: req.GetName(), Type: req.GetType(), Network: req.GetNetwork()}
		return d.Lookup(ctx, local)
	}
	name := nodeName(target)
	addr := target.GetStatus().GetAddr()
	if target.GetStatus().GetState() != shoalpb.NodeState_NODE_STATE_READY || addr == "" {
		return nil, status.Errorf(codes.Unavailable, "--node %s: node %s is not ready ('shoal node ls' shows its state)", ref, name)
	}
	ctx, cancel := context.WithTimeout(ctx, dnsRelayTimeout)
	defer cancel()
	conn, err := d.dial(ctx, addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "--node %s: cannot reach node %s at %s: %v", ref, name, addr, err)
	}
	defer conn.Close()
	// node stays empty: the other node answers itself and never relays on.
	fwd := &shoalpb.DNSLookupRequest{Name: req.GetName(), Type: req.GetType(), Network: req.GetNetwork()}
	resp, err := shoalpb.NewNodeDNSClient(conn).Lookup(ctx, fwd)
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return nil, status.Errorf(st.Code(), "node %s: %s", name, st.Message())
		}
		return nil, status.Errorf(codes.Unavailable, "node %s: %v", name, err)
	}
	return resp, nil
}

// findNode resolves ref, a node ID, unique ID prefix or hostname.
func findNode(nodes []*shoalpb.Node, ref string) (*shoalpb.Node, error) {
	var byPrefix, byHost []*shoalpb.Node
	for _, nd := range nodes {
		switch {
		case nd.GetId() == ref:
			return nd, nil
		case strings.HasPrefix(nd.GetId(), ref):
			byPrefix = append(byPrefix, nd)
		}
		if nd.GetDescription().GetHostname() == ref {
			byHost = append(byHost, nd)
		}
	}
	for _, found := range [][]*shoalpb.Node{byPrefix, byHost} {
		switch len(found) {
		case 0:
			continue
		case 1:
			return found[0], nil
		}
		ids := make([]string, len(found))
		for i, nd := range found {
			ids[i] = nd.GetId()
		}
		return nil, status.Errorf(codes.InvalidArgument, "--node %s is ambiguous: it matches nodes %s; give a longer ID prefix", ref, strings.Join(ids, ", "))
	}
	return nil, status.Errorf(codes.NotFound, "--node %s: no such node; 'shoal node ls' lists the nodes", ref)
}

func nodeName(nd *shoalpb.Node) string {
	if h := nd.GetDescription().GetHostname(); h != "" {
		return fmt.Sprintf("%s (%s)", h, nd.GetId())
	}
	return nd.GetId()
}

// parseDNSQuestion checks the name and type of a lookup: the type defaults
// to A, and for PTR an IP address stands for its reverse name.
func parseDNSQuestion(name, typ string) (string, uint16, error) {
	if name == "" {
		return "", 0, status.Error(codes.InvalidArgument, "name: missing; give the name to look up, e.g. web, tasks.web or _http._tcp.web")
	}
	qtype := dns.TypeA
	if typ != "" {
		t, ok := dns.StringToType[strings.ToUpper(typ)]
		if !ok || t == dns.TypeNone || t == dns.TypeOPT {
			return "", 0, status.Errorf(codes.InvalidArgument, "--type %q: not a DNS query type; use A, AAAA, SRV, PTR, TXT or ANY", typ)
		}
		qtype = t
	}
	if qtype == dns.TypePTR {
		if a, err := netip.ParseAddr(name); err == nil {
			rev, err := dns.ReverseAddr(a.String())
			if err == nil {
				name = rev
			}
		}
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return "", 0, status.Errorf(codes.InvalidArgument, "name %q: not a domain name; give a name such as web or tasks.web", name)
	}
	return name, qtype, nil
}

// lookupResponse is msg as the CLI prints it.
func lookupResponse(msg *dns.Msg) *shoalpb.DNSLookupResponse {
	resp := &shoalpb.DNSLookupResponse{
		Rcode:     dns.RcodeToString[msg.Rcode],
		Forwarded: !msg.Authoritative,
	}
	if resp.Rcode == "" {
		resp.Rcode = fmt.Sprintf("RCODE%d", msg.Rcode)
	}
	for i, rr := range msg.Answer {
		if i == 0 {
			resp.TtlSeconds = rr.Header().Ttl
		}
		resp.Answers = append(resp.Answers, rr.String())
	}
	return resp
}

// dnsDebug is the node's NodeDNS server for its current role: a manager
// (store set) resolves --node and relays to the other nodes.
func (n *Node) dnsDebug(id Identity, store *state.Store) *dnsDebug {
	d := &dnsDebug{
		nodeID:   id.NodeID,
		hostname: n.description().GetHostname(),
		server:   func() *netdns.Server { return nil },
		dial: func(ctx context.Context, addr string) (*grpc.ClientConn, error) {
			return n.dialNode(ctx, addr, ca.RoleManager, ca.RoleWorker)
		},
	}
	if sn := n.tasks.svcnet; sn != nil {
		d.hasDNS, d.server = true, sn.dnsServer
	}
	if store != nil {
		d.nodes = func() []*shoalpb.Node {
			var nodes []*shoalpb.Node
			store.View(func(tx state.ReadTx) { nodes = tx.Nodes() })
			return nodes
		}
	}
	return d
}
