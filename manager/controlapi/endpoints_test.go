package controlapi

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

func endpointSpec(name string, mode shoalpb.EndpointMode, ports ...*shoalpb.PortConfig) *shoalpb.ServiceSpec {
	return &shoalpb.ServiceSpec{Name: name, Replicas: 1, Endpoint: &shoalpb.EndpointSpec{Mode: mode},
		Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "nginx"}, Ports: ports}}
}

func ingress(port uint32) *shoalpb.PortConfig {
	return &shoalpb.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: port, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS}
}

// Services created at once through all three managers get distinct VIPs
// from the pool; an update keeps the VIP, dnsrr mode gives it up, and
// going back to vip mode takes a free one again.
func TestServiceVIPs(t *testing.T) {
	servers, _, _ := realServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 24
	vips := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			svc, err := servers[i%3].CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: endpointSpec(fmt.Sprintf("s%d", i), shoalpb.EndpointMode_ENDPOINT_MODE_VIP)})
			if err != nil {
				errs <- err
				return
			}
			vips[i] = svc.GetEndpoint().GetVip()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
	seen := map[string]bool{}
	for i, v := range vips {
		if !strings.HasPrefix(v, "10.201.") || seen[v] {
			t.Fatalf("service s%d got VIP %q (all: %v): want a distinct address of 10.201.0.0/16", i, v, vips)
		}
		seen[v] = true
	}

	s := servers[0]
	upd := endpointSpec("s0", shoalpb.EndpointMode_ENDPOINT_MODE_VIP)
	upd.Replicas = 3
	svc, err := s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "s0", Spec: upd})
	if err != nil || svc.GetEndpoint().GetVip() != vips[0] {
		t.Fatalf("update: VIP %q err %v, want the VIP kept (%s)", svc.GetEndpoint().GetVip(), err, vips[0])
	}
	svc, err = s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "s0", Spec: endpointSpec("s0", shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR)})
	if err != nil || svc.GetEndpoint() != nil {
		t.Fatalf("dnsrr: endpoint %v err %v, want no VIP", svc.GetEndpoint(), err)
	}
	// A new service gets the lowest free address, which s0 may just have
	// freed (creates that raced skipped ahead, leaving lower ones free).
	held := map[string]bool{}
	for _, v := range vips[1:] {
		held[v] = true
	}
	lowest := netip.MustParseAddr("10.201.0.1")
	for held[lowest.String()] {
		lowest = lowest.Next()
	}
	svc, err = s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: endpointSpec("late", shoalpb.EndpointMode_ENDPOINT_MODE_VIP)})
	if err != nil || svc.GetEndpoint().GetVip() != lowest.String() {
		t.Fatalf("a new service got %q (err %v), want the lowest free VIP %s (s0 freed %s)", svc.GetEndpoint().GetVip(), err, lowest, vips[0])
	}
}

// An ingress port is answered on every node, so two services cannot
// publish the same one; host ports and other protocols are not affected.
func TestIngressPortConflicts(t *testing.T) {
	servers, stores, _ := realServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := servers[0]
	if _, err := s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: endpointSpec("a", 0, ingress(8080))}); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: endpointSpec("b", 0, ingress(8080))})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "--publish") || !strings.Contains(err.Error(), "8080/tcp") || !strings.Contains(err.Error(), "service a") {
		t.Fatalf("second ingress 8080: %v, want InvalidArgument naming --publish, the port and service a", err)
	}
	if n := len(servicesOf(stores[0])); n != 1 {
		t.Fatalf("%d services stored after the refusal, want 1", n)
	}
	host := ingress(8080)
	host.Mode = shoalpb.PublishMode_PUBLISH_MODE_HOST
	udp := ingress(8080)
	udp.Protocol = "udp"
	if _, err := s.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: endpointSpec("c", 0, host, udp)}); err != nil {
		t.Fatalf("host-mode 8080 and ingress 8080/udp: %v", err)
	}
	// A service may keep its own port across an update.
	if _, err := s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "a", Spec: endpointSpec("a", 0, ingress(8080), ingress(8081))}); err != nil {
		t.Fatalf("update keeping its own port: %v", err)
	}
	if _, err := s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: "c", Spec: endpointSpec("c", 0, ingress(8081))}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("update onto a's port: %v, want InvalidArgument", err)
	}
}

func servicesOf(s interface{ View(func(state.ReadTx)) }) []*shoalpb.Service {
	var out []*shoalpb.Service
	s.View(func(tx state.ReadTx) { out = tx.Services() })
	return out
}
