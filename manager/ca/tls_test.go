package ca_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"shoal/manager/ca"
)

func TestHandshake(t *testing.T) {
	root := newRoot(t, "cluster-a")
	other := newRoot(t, "cluster-b")
	manager := newCreds(t, root, "m1", ca.RoleManager)
	manager2 := newCreds(t, root, "m2", ca.RoleManager)
	worker := newCreds(t, root, "w1", ca.RoleWorker)
	stranger := newCreds(t, other, "m9", ca.RoleManager)
	expiredCert, expiredKey := issueAt(t, root, "m3", ca.RoleManager, time.Now().Add(-2*time.Hour), time.Hour)
	expired, err := ca.NewCredentials(expiredCert, expiredKey, root.CertPEM)
	if err != nil {
		t.Fatalf("NewCredentials(expired): %v", err)
	}
	clientCert, clientKey := issue(t, root, "alice", ca.RoleClient)
	cliTLS, err := ca.ClientCertTLS(clientCert, clientKey, root.CertPEM, ca.RoleManager)
	if err != nil {
		t.Fatalf("ClientCertTLS: %v", err)
	}
	_, err = ca.ClientCertTLS(clientCert, clientKey, other.CertPEM)
	checkErr(t, "ClientCertTLS with another cluster's root", err, ca.ErrUntrusted)

	raftServer, _ := manager.PeerTLS(ca.RoleManager)
	_, raftManagerClient := manager2.PeerTLS(ca.RoleManager)
	_, raftWorkerClient := worker.PeerTLS(ca.RoleManager)

	tests := []struct {
		name          string
		server        *tls.Config
		client        *tls.Config
		wantServer    error
		wantClient    error
		clientMessage string
		wantPeerRole  ca.Role // role the server sees; "" for no client certificate
	}{
		{
			name:   "worker dials manager",
			server: manager.ServerTLS(), client: worker.ClientTLS(),
			wantPeerRole: ca.RoleWorker,
		},
		{
			name:   "manager dials manager",
			server: manager.ServerTLS(), client: manager2.ClientTLS(ca.RoleManager),
			wantPeerRole: ca.RoleManager,
		},
		{
			name:   "client certificate from another cluster's CA",
			server: manager.ServerTLS(), client: stranger.ClientTLS(),
			// The client refuses the server first (other root); either way no connection.
			wantServer: errAny, wantClient: errAny,
		},
		{
			name:   "client certificate from another cluster's CA, client trusts anything",
			server: manager.ServerTLS(), client: withCert(stranger),
			wantServer: errAny, wantClient: errSkip,
		},
		{
			name:   "ClientTLS(RoleManager) refuses a worker server",
			server: worker.ServerTLS(), client: manager.ClientTLS(ca.RoleManager),
			wantServer: errAny, wantClient: ca.ErrWrongRole,
			clientMessage: "server w1 has role shoal-worker, expected shoal-manager",
		},
		{
			name:   "ClientTLS accepts any role it was given",
			server: worker.ServerTLS(), client: manager.ClientTLS(ca.RoleManager, ca.RoleWorker),
			wantPeerRole: ca.RoleManager,
		},
		{
			name:   "ClientTLS refuses a server of another cluster",
			server: stranger.ServerTLS(), client: worker.ClientTLS(),
			wantServer: errAny, wantClient: ca.ErrUntrusted,
			clientMessage: "certificate signed by a different cluster's CA",
		},
		{
			name:   "ClientTLS refuses an expired server certificate",
			server: expired.ServerTLS(), client: worker.ClientTLS(),
			wantServer: errAny, wantClient: ca.ErrUntrusted,
			clientMessage: "expired",
		},
		{
			name:   "PeerTLS accepts a manager",
			server: raftServer, client: raftManagerClient,
			wantPeerRole: ca.RoleManager,
		},
		{
			name:   "PeerTLS refuses a worker client",
			server: raftServer, client: raftWorkerClient,
			wantServer: ca.ErrWrongRole, wantClient: errSkip,
		},
		{
			name:   "PeerTLS requires a client certificate",
			server: raftServer, client: ca.TrustRootTLS(root.Cert),
			wantServer: errAny, wantClient: errSkip,
		},
		{
			name:   "BootstrapTLS accepts any server",
			server: stranger.ServerTLS(), client: ca.BootstrapTLS(),
		},
		{
			name:   "TrustRootTLS accepts a manager of that root",
			server: manager.ServerTLS(), client: ca.TrustRootTLS(root.Cert),
		},
		{
			name:   "TrustRootTLS refuses a manager of another root",
			server: manager.ServerTLS(), client: ca.TrustRootTLS(other.Cert),
			wantServer: errAny, wantClient: ca.ErrUntrusted,
			clientMessage: "certificate signed by a different cluster's CA",
		},
		{
			name:   "ClientCertTLS presents a client certificate",
			server: manager.ServerTLS(), client: cliTLS,
			wantPeerRole: ca.RoleClient,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := handshake(t, tt.server, tt.client)
			t.Logf("server: %v; client: %v", server.err, client.err)
			checkErr(t, "server handshake", server.err, tt.wantServer)
			checkErr(t, "client handshake", client.err, tt.wantClient)
			if tt.clientMessage != "" && !strings.Contains(client.err.Error(), tt.clientMessage) {
				t.Fatalf("client error %q does not contain %q", client.err, tt.clientMessage)
			}
			if server.err != nil {
				return
			}
			var gotRole ca.Role
			if len(server.state.VerifiedChains) > 0 {
				id, err := ca.IdentityFromCert(server.state.PeerCertificates[0])
				if err != nil {
					t.Fatalf("IdentityFromCert(peer): %v", err)
				}
				gotRole = id.Role
			}
			if gotRole != tt.wantPeerRole {
				t.Fatalf("server sees client role %q, want %q", gotRole, tt.wantPeerRole)
			}
		})
	}
}

func TestServerTLSNegotiatesH2(t *testing.T) {
	root := newRoot(t, "cluster-a")
	server, client := handshake(t, newCreds(t, root, "m1", ca.RoleManager).ServerTLS(),
		newCreds(t, root, "w1", ca.RoleWorker).ClientTLS())
	if server.err != nil || client.err != nil {
		t.Fatalf("handshake: server %v, client %v", server.err, client.err)
	}
	if got := client.state.NegotiatedProtocol; got != "h2" {
		t.Fatalf("negotiated protocol = %q, want h2", got)
	}
	if got := client.state.Version; got < tls.VersionTLS12 {
		t.Fatalf("TLS version = %x, want at least 1.2", got)
	}
}

// TestReplaceTakesEffectOnNextHandshake checks that configurations built
// before a renewal present the new certificate without being rebuilt.
func TestReplaceTakesEffectOnNextHandshake(t *testing.T) {
	root := newRoot(t, "cluster-a")
	manager := newCreds(t, root, "m1", ca.RoleManager)
	worker := newCreds(t, root, "w1", ca.RoleWorker)
	serverCfg := manager.ServerTLS()
	clientCfg := worker.ClientTLS()

	for round := range 3 {
		server, client := handshake(t, serverCfg, clientCfg)
		if server.err != nil || client.err != nil {
			t.Fatalf("round %d: handshake: server %v, client %v", round, server.err, client.err)
		}
		if got, want := client.state.PeerCertificates[0].SerialNumber, manager.Leaf().SerialNumber; got.Cmp(want) != 0 {
			t.Fatalf("round %d: server presented serial %s, want the current %s", round, got, want)
		}
		if got, want := server.state.PeerCertificates[0].SerialNumber, worker.Leaf().SerialNumber; got.Cmp(want) != 0 {
			t.Fatalf("round %d: client presented serial %s, want the current %s", round, got, want)
		}
		// Renew both sides, as the agent does.
		if err := manager.Replace(issue(t, root, "m1", ca.RoleManager)); err != nil {
			t.Fatalf("round %d: Replace(manager): %v", round, err)
		}
		if err := worker.Replace(issue(t, root, "w1", ca.RoleWorker)); err != nil {
			t.Fatalf("round %d: Replace(worker): %v", round, err)
		}
	}
}

// withCert returns a client configuration presenting c's certificate that
// trusts any server, to reach the server's check of the client.
func withCert(c *ca.Credentials) *tls.Config {
	cfg := ca.BootstrapTLS()
	cfg.GetClientCertificate = c.ClientTLS().GetClientCertificate
	return cfg
}
