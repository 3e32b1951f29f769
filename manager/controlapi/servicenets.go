package controlapi

import (
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/allocator"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// dnsLabel is what a network alias may be: a DNS name of letters, digits,
// '-' and '_' labels joined by dots, as a task would look it up.
var dnsLabel = regexp.MustCompile(`^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)*$`)

// networkByRef finds a network by ID, name or unique ID prefix; "default"
// is the cluster's default network, which is not stored.
func networkByRef(tx state.ReadTx, ref string) (*shoalpb.Network, error) {
	if ref == allocator.DefaultNetworkID {
		return allocator.DefaultNetwork(tx.Cluster().GetSpec()), nil
	}
	if n := tx.Network(ref); n != nil {
		return n, nil
	}
	if n := tx.NetworkByName(ref); n != nil {
		return n, nil
	}
	var matches []string
	var found *shoalpb.Network
	for _, n := range tx.Networks() {
		if strings.HasPrefix(n.GetId(), ref) {
			matches = append(matches, n.GetId())
			found = n
		}
	}
	switch len(matches) {
	case 0:
		return nil, status.Errorf(codes.NotFound, "network %q not found; 'shoal network ls' lists the networks, 'shoal network create %s' makes it", ref, ref)
	case 1:
		return found, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "network %q is ambiguous: it matches %s; use the name or a longer ID prefix", ref, strings.Join(matches, ", "))
}

// resolveNetworks checks the networks of spec and replaces each target (a
// name, ID or ID prefix) by the network's ID, so the stored spec does not
// change meaning if a network of the same name is made again later.
func resolveNetworks(tx state.ReadTx, spec *shoalpb.ServiceSpec) error {
	seen := map[string]string{}
	for _, att := range spec.GetTask().GetNetworks() {
		ref := att.GetTarget()
		if ref == "" {
			return invalid("--network", "an entry has no network name; use --network NAME[,alias=ALIAS]")
		}
		n, err := networkByRef(tx, ref)
		if err != nil {
			if status.Code(err) == codes.NotFound {
				return invalid("--network", "no network %q; create it with 'shoal network create %s' or pick one of 'shoal network ls'", ref, ref)
			}
			return err
		}
		if first, dup := seen[n.GetId()]; dup {
			return invalid("--network", "network %s is listed twice (%q and %q); list each network once", n.GetSpec().GetName(), first, ref)
		}
		seen[n.GetId()] = ref
		for _, a := range att.GetAliases() {
			if !dnsLabel.MatchString(a) {
				return invalid("--network", "alias %q on network %s is not a DNS name: use letters, digits, '-' and '_' in dot-separated labels", a, n.GetSpec().GetName())
			}
		}
		att.Target = n.GetId()
	}
	return nil
}
