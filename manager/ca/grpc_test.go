package ca_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"shoal/manager/ca"
)

// seen is what the server's interceptor learned about one caller.
type seen struct {
	id ca.Identity
	ok bool
}

// startGRPC serves the health service with cfg on loopback and reports the
// PeerIdentity of every call on the returned channel.
func startGRPC(t *testing.T, cfg *tls.Config) (addr string, calls <-chan seen) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ch := make(chan seen, 1)
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(cfg)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			id, ok := ca.PeerIdentity(ctx)
			ch <- seen{id: id, ok: ok}
			return next(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), ch
}

func TestPeerIdentityOverGRPC(t *testing.T) {
	root := newRoot(t, "cluster-a")
	manager := newCreds(t, root, "m1", ca.RoleManager)
	worker := newCreds(t, root, "w1", ca.RoleWorker)
	clientCert, clientKey := issue(t, root, "alice", ca.RoleClient)
	cliTLS, err := ca.ClientCertTLS(clientCert, clientKey, root.CertPEM)
	if err != nil {
		t.Fatalf("ClientCertTLS: %v", err)
	}
	addr, calls := startGRPC(t, manager.ServerTLS())

	tests := []struct {
		name   string
		client *tls.Config
		want   seen
	}{
		{"worker certificate", worker.ClientTLS(), seen{id: worker.Identity(), ok: true}},
		{"remote CLI certificate", cliTLS, seen{id: ca.Identity{NodeID: "alice", ClusterID: "cluster-a", Role: ca.RoleClient}, ok: true}},
		{"joining node without certificate", ca.TrustRootTLS(root.Cert), seen{}},
		{"bootstrap without certificate", ca.BootstrapTLS(), seen{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(tt.client)))
			if err != nil {
				t.Fatalf("grpc.NewClient: %v", err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got := <-calls; got != tt.want {
				t.Fatalf("PeerIdentity = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPeerIdentityWithoutTLS(t *testing.T) {
	if id, ok := ca.PeerIdentity(context.Background()); ok {
		t.Fatalf("PeerIdentity(no peer) = %+v, true; want false", id)
	}
}
