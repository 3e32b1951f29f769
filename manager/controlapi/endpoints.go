package controlapi

import (
	"errors"
	"fmt"
	"net/netip"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/allocator"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// vipAttempts bounds how often CreateService picks another VIP when a
// concurrent create took the one it picked (the store refuses duplicates).
const vipAttempts = 20

// endpointFor is what svc (spec already set) should have allocated, given
// what it had (cur, nil for a new service): a VIP in vip mode, kept across
// updates; nothing in dnsrr mode. Ingress ports are checked against the
// other services' here too, as only the store knows them.
//
// skip > 0 after a concurrent create took the VIP picked: a random later
// free address makes a second collision unlikely.
func endpointFor(tx state.ReadTx, svc *shoalpb.Service, cur *shoalpb.ServiceEndpoint, skip int) (*shoalpb.ServiceEndpoint, error) {
	if err := checkIngressPorts(tx, svc); err != nil {
		return nil, err
	}
	if svc.GetSpec().GetEndpoint().GetMode() == shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR {
		return nil, nil
	}
	if cur.GetVip() != "" {
		return cur, nil
	}
	pool, err := allocator.VIPPoolOf(tx.Cluster().GetSpec())
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	used := map[netip.Addr]bool{}
	for _, other := range tx.Services() {
		if a, err := netip.ParseAddr(other.GetEndpoint().GetVip()); err == nil {
			used[a] = true
		}
	}
	vip, err := allocator.FreeVIP(pool, used, skip)
	if err != nil {
		return nil, status.Errorf(codes.ResourceExhausted, "%v", err)
	}
	return &shoalpb.ServiceEndpoint{Vip: vip.String()}, nil
}

// checkIngressPorts refuses an ingress port that another service already
// publishes: the routing mesh answers it on every node.
func checkIngressPorts(tx state.ReadTx, svc *shoalpb.Service) error {
	mine := map[string]bool{}
	for _, p := range svc.GetSpec().GetTask().GetPorts() {
		if k := ingressKey(p); k != "" {
			mine[k] = true
		}
	}
	if len(mine) == 0 {
		return nil
	}
	for _, other := range tx.Services() {
		if other.GetId() == svc.GetId() {
			continue
		}
		for _, p := range other.GetSpec().GetTask().GetPorts() {
			if k := ingressKey(p); mine[k] {
				return invalid("--publish", "port %s is already published by service %s (ingress ports are answered on every node); choose another published port", k, other.GetSpec().GetName())
			}
		}
	}
	return nil
}

func ingressKey(p *shoalpb.PortConfig) string {
	if p.GetMode() != shoalpb.PublishMode_PUBLISH_MODE_INGRESS || p.GetPublishedPort() == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%s", p.GetPublishedPort(), p.GetProtocol())
}

// vipTaken reports whether err is the store refusing a duplicate VIP.
func vipTaken(tx state.ReadTx, svc *shoalpb.Service, err error) bool {
	return errors.Is(err, state.ErrExists) && tx.ServiceByName(svc.GetSpec().GetName()) == nil
}
