package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"shoal/internal/testutil"
	"shoal/manager/ca"
	shoalpb "shoal/proto"
)

// What a worker's certificate and the local socket give access to, and the
// remote CLI with a client certificate. The subtests only read, so they
// share one cluster.
func TestAccessControl(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1)
	m, w := c.Managers[0], c.Workers[0]

	t.Run("worker socket says it is a worker", func(t *testing.T) {
		_, err := w.Shoal(t, "node", "ls")
		wantError(t, "node ls on a worker", err, "worker")
		out := mustShoal(t, w, "info")
		if !regexp.MustCompile(`(?m)^Role:\s+worker$`).MatchString(out) {
			t.Fatalf("info on the worker does not say Role: worker:\n%s", out)
		}
		r, err := row(t, m, w.ID(t))
		if err != nil || r.Role != "worker" {
			t.Fatalf("the manager lists the worker as %+v (%v), want role worker", r, err)
		}
	})

	t.Run("control API refuses a worker certificate", func(t *testing.T) {
		for _, tc := range []struct {
			node *testutil.Node
			want codes.Code
		}{{w, codes.PermissionDenied}, {m, codes.OK}} {
			creds := loadCreds(t, tc.node)
			conn, err := grpc.NewClient(m.Addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientTLS(ca.RoleManager))))
			if err != nil {
				t.Fatal(err)
			}
			_, err = shoalpb.NewControlServiceClient(conn).ListNodes(callCtx(t), &shoalpb.ListNodesRequest{})
			conn.Close()
			if got := status.Code(err); got != tc.want {
				t.Fatalf("ListNodes with the certificate of %s: %v (code %s), want code %s", tc.node.Name, err, got, tc.want)
			}
		}
	})

	t.Run("raft port refuses worker and client certificates", func(t *testing.T) {
		raftAddr := net.JoinHostPort(m.IP, "2378")
		_, workerTLS := loadCreds(t, w).PeerTLS(ca.RoleManager)
		if err := raftHandshake(raftAddr, workerTLS); err == nil {
			t.Fatalf("the Raft port accepted a worker certificate")
		}
		clientTLS := clientCertTLS(t, m)
		clientTLS.NextProtos = nil
		if err := raftHandshake(raftAddr, clientTLS); err == nil {
			t.Fatalf("the Raft port accepted a client certificate")
		}
		_, managerTLS := loadCreds(t, m).PeerTLS(ca.RoleManager)
		if err := raftHandshake(raftAddr, managerTLS); err != nil {
			t.Fatalf("the Raft port refused a manager certificate: %v", err)
		}
	})

	t.Run("reflection on the local socket", func(t *testing.T) {
		services := reflectedServices(t, m)
		if !slices.Contains(services, "shoal.v1.ControlService") {
			t.Fatalf("reflection on the manager's socket lists %v, want shoal.v1.ControlService", services)
		}
	})

	t.Run("remote CLI with a client certificate", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "client")
		mustShoal(t, m, "cert", "client", "--out", dir)
		for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Fatalf("cert client did not write %s: %v", f, err)
			}
		}
		out, err := testutil.Run(t, "-H", m.Addr, "--tls-dir", dir, "node", "ls")
		if err != nil {
			t.Fatalf("remote node ls: %v", err)
		}
		for _, n := range []*testutil.Node{m, w} {
			if !strings.Contains(out, n.ID(t)) {
				t.Fatalf("remote node ls lacks %s:\n%s", n.Name, out)
			}
		}
		_, err = testutil.Run(t, "-H", m.Addr, "--tls-dir", t.TempDir(), "node", "ls")
		wantError(t, "remote node ls without a certificate", err, "shoal cert client")
	})
}

// loadCreds reads a node's certificate, key and root from its data dir, the
// way the daemon does. A renewal may be replacing them: retry until they
// form a matching set.
func loadCreds(t *testing.T, n *testutil.Node) *ca.Credentials {
	t.Helper()
	var creds *ca.Credentials
	testutil.Eventually(t, settle, func() error {
		var err error
		creds, err = ca.LoadCredentials(n.CertsDir())
		return err
	})
	return creds
}

// clientCertTLS issues a client certificate through m's socket and returns
// the remote CLI's TLS configuration for it.
func clientCertTLS(t *testing.T, m *testutil.Node) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	mustShoal(t, m, "cert", "client", "--out", dir)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cfg, err := ca.ClientCertTLS(read("cert.pem"), read("key.pem"), read("ca.pem"), ca.RoleManager)
	if err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	return cfg
}

// raftHandshake opens a TLS connection to a Raft port. With TLS 1.3 the
// server's refusal of a client certificate arrives after the client's side
// of the handshake, so a refusal is looked for on the first read too: a
// refused peer gets an alert, an accepted one a connection that waits for
// its first Raft request (the read times out).
func raftHandshake(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return nil
	}
	if err == nil {
		return errors.New("the Raft port sent data before any request")
	}
	return err
}

// reflectedServices lists the services n's local socket names through gRPC
// server reflection.
func reflectedServices(t *testing.T, n *testutil.Node) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(dialSocket(t, n)).ServerReflectionInfo(callCtx(t))
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}); err != nil {
		t.Fatalf("reflection: send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: receive: %v", err)
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

// Node certificates renew in the background: with a 30 s lifetime every
// node gets a new certificate while its process keeps running, stays ready,
// and is still trusted once the first certificates have expired.
func TestCertificateRenewalWithoutRestart(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1, testutil.WithInitArgs("--cert-expiry", "30s"))
	m, w := c.Managers[0], c.Workers[0]
	type start struct {
		cert *x509.Certificate
		pid  int
	}
	first := map[*testutil.Node]start{}
	for _, n := range c.Nodes() {
		first[n] = start{readCert(t, n), n.PID()}
	}
	firstWorkerCreds := loadCreds(t, w)

	testutil.Eventually(t, settle, func() error {
		for _, n := range c.Nodes() {
			cert := readCert(t, n)
			if cert.SerialNumber.Cmp(first[n].cert.SerialNumber) == 0 {
				return fmt.Errorf("%s still has its first certificate (serial %s)", n.Name, cert.SerialNumber)
			}
			if !cert.NotAfter.After(first[n].cert.NotAfter) {
				return fmt.Errorf("%s has a new certificate that expires %s, no later than its first (%s)", n.Name, cert.NotAfter, first[n].cert.NotAfter)
			}
		}
		return nil
	})
	for _, n := range c.Nodes() {
		if !n.Running() || n.PID() != first[n].pid {
			t.Fatalf("%s: pid %d, running %v; want the same process (%d) after the renewal", n.Name, n.PID(), n.Running(), first[n].pid)
		}
	}
	// The manager presents its renewed certificate on new connections: TLS
	// reads the current certificate, no restart needed.
	testutil.Eventually(t, settle, func() error {
		serial, err := servedSerial(m.Addr, loadCreds(t, w))
		if err != nil {
			return err
		}
		if onDisk := readCert(t, m).SerialNumber; serial.Cmp(onDisk) != 0 {
			return fmt.Errorf("the manager serves certificate %s, its data dir holds %s", serial, onDisk)
		}
		return nil
	})

	// Once the first certificates have expired, the renewed ones still open
	// connections, and the old worker certificate no longer does.
	expired := first[w].cert.NotAfter.Add(time.Second)
	testutil.Eventually(t, 2*settle, func() error {
		if now := time.Now(); now.Before(expired) {
			return fmt.Errorf("the first certificates are valid until %s", expired)
		}
		return nil
	})
	if _, err := servedSerial(m.Addr, loadCreds(t, w)); err != nil {
		t.Fatalf("after the first certificates expired, the worker's renewed certificate is refused: %v", err)
	}
	if _, err := servedSerial(m.Addr, firstWorkerCreds); err == nil {
		t.Fatalf("the manager still accepts the worker's expired first certificate")
	}
	c.WaitHealthy(t)
	for _, n := range c.Nodes() {
		if n.PID() != first[n].pid {
			t.Fatalf("%s was restarted (pid %d, was %d)", n.Name, n.PID(), first[n].pid)
		}
	}
}

// readCert parses a node's certificate from its data dir.
func readCert(t *testing.T, n *testutil.Node) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.CertsDir(), ca.NodeCertFile))
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: %s holds no PEM block", n.Name, ca.NodeCertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return cert
}

// servedSerial makes a health check to addr with creds (so both sides'
// certificates must be valid) and returns the serial of the certificate the
// server presented.
func servedSerial(addr string, creds *ca.Credentials) (*big.Int, error) {
	var mu sync.Mutex // the handshake runs on a gRPC goroutine
	var served []*x509.Certificate
	cfg := creds.ClientTLS(ca.RoleManager)
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		served = cs.PeerCertificates
		mu.Unlock()
		return verify(cs)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return nil, err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return nil, fmt.Errorf("health: %s", resp.GetStatus())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(served) == 0 {
		return nil, errors.New("the server presented no certificate")
	}
	return served[0].SerialNumber, nil
}
