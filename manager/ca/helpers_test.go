package ca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"shoal/manager/ca"
)

// errAny in a table means "any non-nil error"; errSkip means "not checked".
var (
	errAny  = errors.New("any error")
	errSkip = errors.New("not checked")
)

// checkErr fails the test unless err matches want (nil, errAny, errSkip or
// a sentinel tested with errors.Is).
func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == errSkip:
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error: %v", what, err)
	case want == errAny && err == nil:
		t.Fatalf("%s: got no error, want one", what)
	case want != nil && want != errAny && !errors.Is(err, want):
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, want)
	}
}

func newRoot(t *testing.T, clusterID string) *ca.RootCA {
	t.Helper()
	root, err := ca.NewRootCA(clusterID, time.Now())
	if err != nil {
		t.Fatalf("NewRootCA: %v", err)
	}
	return root
}

// issue returns a fresh key and a certificate for it valid from now-1m to
// now+ttl.
func issueAt(t *testing.T, root *ca.RootCA, nodeID string, role ca.Role, now time.Time, ttl time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatalf("NewKeyAndCSR: %v", err)
	}
	id := ca.Identity{NodeID: nodeID, ClusterID: root.ClusterID(), Role: role}
	certPEM, err = root.IssueCertificate(csr, id, now, ttl)
	if err != nil {
		t.Fatalf("IssueCertificate(%+v): %v", id, err)
	}
	return certPEM, keyPEM
}

func issue(t *testing.T, root *ca.RootCA, nodeID string, role ca.Role) (certPEM, keyPEM []byte) {
	t.Helper()
	return issueAt(t, root, nodeID, role, time.Now(), time.Hour)
}

func newCreds(t *testing.T, root *ca.RootCA, nodeID string, role ca.Role) *ca.Credentials {
	t.Helper()
	certPEM, keyPEM := issue(t, root, nodeID, role)
	creds, err := ca.NewCredentials(certPEM, keyPEM, root.CertPEM)
	if err != nil {
		t.Fatalf("NewCredentials(%s): %v", nodeID, err)
	}
	return creds
}

// side is one end of a handshake.
type side struct {
	state tls.ConnectionState
	err   error
}

// handshake runs one TLS handshake over loopback TCP and returns both ends'
// results. Loopback rather than net.Pipe: TLS 1.3 writes flights the other
// side only reads later, which deadlocks on an unbuffered pipe.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (server, client side) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	done := make(chan side, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- side{err: err}
			return
		}
		defer raw.Close()
		conn := tls.Server(raw, serverCfg)
		err = conn.HandshakeContext(ctx)
		done <- side{state: conn.ConnectionState(), err: err}
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer raw.Close()
	conn := tls.Client(raw, clientCfg)
	client.err = conn.HandshakeContext(ctx)
	client.state = conn.ConnectionState()
	if client.err != nil {
		raw.Close() // unblock the server if it waits for us
	}
	server = <-done
	return server, client
}

// x509Opts verifies a node certificate against c's root for client use.
func x509Opts(c *ca.Credentials) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: c.RootPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}
