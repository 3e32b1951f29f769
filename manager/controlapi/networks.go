package controlapi

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/internal/ids"
	"shoal/manager/allocator"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// networkName is what a network may be called: one DNS label of lower-case
// letters, digits, '-' and '_'. Lower case only, because DNS does not tell
// "Front" from "front" and two such networks could not be told apart by
// anything that names them in a lookup; no dots, because a network's name
// is one label, never a domain.
var networkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// reservedNetworkNames are names Docker users know as built-in networks; a
// user network of that name would be taken for the built-in one.
var reservedNetworkNames = []string{allocator.DefaultNetworkName, "host", "none", "bridge", "ingress"}

// networkAttempts bounds how often CreateNetwork takes another free subnet
// when a create through another manager stored the one it picked first.
const networkAttempts = 20

// CreateNetwork validates and stores a new network: its subnet is
// spec.subnet, checked against the pools and the other networks, or the
// lowest free one of the cluster's network pool.
func (s *Server) CreateNetwork(ctx context.Context, req *shoalpb.CreateNetworkRequest) (*shoalpb.NetworkView, error) {
	spec := req.GetSpec()
	if err := validateNetworkSpec(spec); err != nil {
		return nil, err
	}
	now := timestamppb.New(s.cfg.Now())
	nw := &shoalpb.Network{
		Id:   ids.New(),
		Meta: &shoalpb.Meta{CreatedAt: now, UpdatedAt: now},
		Spec: spec,
	}
	for attempt := 1; ; attempt++ {
		if err := s.cfg.Store.CatchUp(ctx); err != nil {
			return nil, s.StoreError(err)
		}
		var err error
		s.cfg.Store.View(func(tx state.ReadTx) { nw.Subnet, err = networkSubnet(tx, spec, attempt) })
		if err != nil {
			return nil, err
		}
		_, err = s.cfg.Store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Network{Network: nw}})
		if err == nil {
			break
		}
		// The store refused a duplicate name or subnet: another create
		// committed first. The next pass reads it and either refuses
		// with a message naming it or takes another subnet.
		if !errors.Is(err, state.ErrExists) || attempt >= networkAttempts {
			return nil, s.StoreError(err)
		}
	}
	return s.GetNetwork(ctx, &shoalpb.GetNetworkRequest{Network: nw.Id})
}

// validateNetworkSpec checks what can be checked of a network spec before
// the store is read.
func validateNetworkSpec(spec *shoalpb.NetworkSpec) error {
	if spec == nil {
		return invalid("spec", "missing")
	}
	if slices.Contains(reservedNetworkNames, spec.GetName()) {
		return invalid("NAME", "%q is reserved (%s are built-in network names); pick another name", spec.GetName(), strings.Join(reservedNetworkNames, ", "))
	}
	if !networkName.MatchString(spec.GetName()) {
		return invalid("NAME", "%q is not a valid network name: use 1–63 lower-case letters, digits, '_' or '-', starting with a letter or digit", spec.GetName())
	}
	for k := range spec.GetLabels() {
		if k == "" {
			return invalid("--label", "a label has no key; use KEY=VALUE")
		}
	}
	return nil
}

// networkSubnet is the subnet a new network of spec gets, read from tx:
// spec.subnet if it is valid and free, else the lowest free subnet of the
// network pool. A retry (attempt > 1) skips a random number of free subnets,
// so creates racing through several managers stop picking the same one.
func networkSubnet(tx state.ReadTx, spec *shoalpb.NetworkSpec, attempt int) (string, error) {
	if tx.NetworkByName(spec.GetName()) != nil {
		return "", status.Errorf(codes.AlreadyExists, "NAME: a network named %q already exists; pick another name, or remove it first with 'shoal network rm %s'", spec.GetName(), spec.GetName())
	}
	cluster := tx.Cluster().GetSpec()
	others := tx.Networks()
	if spec.GetSubnet() != "" {
		p, err := allocator.CheckNetworkSubnet(cluster, spec.GetSubnet(), others)
		if err != nil {
			return "", subnetError(err, codes.InvalidArgument)
		}
		return p.String(), nil
	}
	skip := 0
	if attempt > 1 {
		skip = rand.IntN(2 * attempt)
	}
	var p netip.Prefix
	for i := 0; i <= skip; i++ {
		next, err := allocator.FreeNetworkSubnet(cluster, others)
		if err != nil {
			if i > 0 { // fewer free subnets than skip: take the last one found
				break
			}
			return "", subnetError(err, codes.ResourceExhausted)
		}
		p = next
		others = append(slices.Clip(others), &shoalpb.Network{Subnet: p.String()})
	}
	return p.String(), nil
}

// subnetError maps an allocator error: a broken pool in the cluster spec is
// no fault of the request.
func subnetError(err error, code codes.Code) error {
	if errors.Is(err, allocator.ErrInvalidPool) {
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}

// GetNetwork finds a network by ID, unique ID prefix or name; "default" is
// the cluster's default network, which is implied by the cluster spec.
func (s *Server) GetNetwork(ctx context.Context, req *shoalpb.GetNetworkRequest) (*shoalpb.NetworkView, error) {
	var view *shoalpb.NetworkView
	var err error
	s.cfg.Store.View(func(tx state.ReadTx) {
		var nw *shoalpb.Network
		if req.GetNetwork() == "" {
			err = status.Error(codes.InvalidArgument, "network: missing network name or ID; 'shoal network ls' lists the networks")
			return
		}
		if nw, err = networkByRef(tx, req.GetNetwork()); err != nil {
			return
		}
		view = networkView(nw, networkServices(tx)[nw.GetId()])
	})
	return view, err
}

// ListNetworks lists the default network, then the others by name, each
// with the names of the services on it.
func (s *Server) ListNetworks(ctx context.Context, req *shoalpb.ListNetworksRequest) (*shoalpb.ListNetworksResponse, error) {
	resp := &shoalpb.ListNetworksResponse{}
	s.cfg.Store.View(func(tx state.ReadTx) {
		users := networkServices(tx)
		resp.Networks = append(resp.Networks, networkView(allocator.DefaultNetwork(tx.Cluster().GetSpec()), users[allocator.DefaultNetworkID]))
		stored := tx.Networks()
		sort.Slice(stored, func(i, j int) bool { return stored[i].GetSpec().GetName() < stored[j].GetSpec().GetName() })
		for _, nw := range stored {
			resp.Networks = append(resp.Networks, networkView(nw, users[nw.GetId()]))
		}
	})
	return resp, nil
}

// RemoveNetwork deletes a network no service uses. The default network is
// implied by the cluster spec and cannot go.
func (s *Server) RemoveNetwork(ctx context.Context, req *shoalpb.RemoveNetworkRequest) (*shoalpb.RemoveNetworkResponse, error) {
	err := s.update(ctx, func(tx state.ReadTx) ([]*shoalpb.StoreAction, error) {
		if req.GetNetwork() == "" {
			return nil, status.Error(codes.InvalidArgument, "network: missing network name or ID; 'shoal network ls' lists the networks")
		}
		nw, err := networkByRef(tx, req.GetNetwork())
		if err != nil {
			return nil, err
		}
		if nw.GetId() == allocator.DefaultNetworkID {
			return nil, status.Error(codes.FailedPrecondition, "the default network cannot be removed: services without --network use it")
		}
		if users := networkServices(tx)[nw.GetId()]; len(users) > 0 {
			name := nw.GetSpec().GetName()
			return nil, status.Errorf(codes.FailedPrecondition, "network %s is in use by service(s) %s; remove them or run 'shoal service update --network-rm %s SERVICE' for each first",
				name, strings.Join(users, ", "), name)
		}
		return []*shoalpb.StoreAction{{Kind: shoalpb.StoreActionKind_STORE_ACTION_DELETE, Target: &shoalpb.StoreAction_Network{Network: nw}}}, nil
	})
	if err != nil {
		return nil, err
	}
	return &shoalpb.RemoveNetworkResponse{}, nil
}

// networkView is nw with the services on it.
func networkView(nw *shoalpb.Network, services []string) *shoalpb.NetworkView {
	return &shoalpb.NetworkView{Network: nw, Services: services, Default: nw.GetId() == allocator.DefaultNetworkID}
}

// networkServices maps network IDs to the sorted names of the services on
// them: the targets of a service's task spec, or the default network when
// it lists none.
func networkServices(tx state.ReadTx) map[string][]string {
	out := map[string][]string{}
	for _, svc := range tx.Services() {
		seen := map[string]bool{}
		for _, id := range allocator.TaskNetworkIDs(svc.GetSpec().GetTask()) {
			if !seen[id] {
				seen[id] = true
				out[id] = append(out[id], svc.GetSpec().GetName())
			}
		}
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out
}
