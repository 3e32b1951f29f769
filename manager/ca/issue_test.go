package ca_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"shoal/manager/ca"
)

func TestIssueCertificate(t *testing.T) {
	root := newRoot(t, "cluster-a")
	now := time.Now().Truncate(time.Second)
	ttl := 90 * 24 * time.Hour
	tests := []struct {
		name string
		id   ca.Identity
	}{
		{"manager", ca.Identity{NodeID: "m1", ClusterID: "cluster-a", Role: ca.RoleManager}},
		{"worker", ca.Identity{NodeID: "w1", ClusterID: "cluster-a", Role: ca.RoleWorker}},
		{"client", ca.Identity{NodeID: "alice", ClusterID: "cluster-a", Role: ca.RoleClient}},
	}
	serials := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The CSR asks for another identity; the CA must ignore it.
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: "evil", Organization: []string{"other"}, OrganizationalUnit: []string{"shoal-manager"}},
			}, key)
			if err != nil {
				t.Fatalf("CreateCertificateRequest: %v", err)
			}
			certPEM, err := root.IssueCertificate(csr, tt.id, now, ttl)
			if err != nil {
				t.Fatalf("IssueCertificate: %v", err)
			}
			cert, err := parseCert(certPEM)
			if err != nil {
				t.Fatalf("parse issued certificate: %v", err)
			}
			got, err := ca.IdentityFromCert(cert)
			if err != nil {
				t.Fatalf("IdentityFromCert: %v", err)
			}
			if got != tt.id {
				t.Fatalf("IdentityFromCert = %+v, want %+v", got, tt.id)
			}
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Fatalf("certificate key is not the CSR's key")
			}
			if got, want := cert.NotBefore, now.Add(-time.Minute); !got.Equal(want) {
				t.Fatalf("NotBefore = %v, want %v", got, want)
			}
			if got, want := cert.NotAfter, now.Add(ttl); !got.Equal(want) {
				t.Fatalf("NotAfter = %v, want %v", got, want)
			}
			if cert.IsCA {
				t.Fatalf("node certificate IsCA = true, want false")
			}
			if got := cert.SerialNumber.BitLen(); got > 128 || got < 64 {
				t.Fatalf("serial has %d bits, want a random 128-bit number", got)
			}
			if serials[cert.SerialNumber.String()] {
				t.Fatalf("serial %s issued twice", cert.SerialNumber)
			}
			serials[cert.SerialNumber.String()] = true
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
				_, err := cert.Verify(x509.VerifyOptions{Roots: root.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
				if err != nil {
					t.Fatalf("verify for usage %v: %v", usage, err)
				}
			}
		})
	}
}

func TestIssueCertificateCapsAtRootExpiry(t *testing.T) {
	root := newRoot(t, "cluster-a")
	certPEM, _ := issueAt(t, root, "n1", ca.RoleWorker, time.Now(), 100*365*24*time.Hour)
	cert, err := parseCert(certPEM)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if !cert.NotAfter.Equal(root.Cert.NotAfter) {
		t.Fatalf("NotAfter = %v, want the root's %v", cert.NotAfter, root.Cert.NotAfter)
	}
}

func TestIssueCertificateRefuses(t *testing.T) {
	root := newRoot(t, "cluster-a")
	_, goodCSR, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatalf("NewKeyAndCSR: %v", err)
	}
	tampered := append([]byte(nil), goodCSR...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	worker := ca.Identity{NodeID: "w1", ClusterID: "cluster-a", Role: ca.RoleWorker}
	tests := []struct {
		name    string
		csr     []byte
		id      ca.Identity
		ttl     time.Duration
		want    error
		message string
	}{
		{"ECDSA P-384 key", csrFor(t, p384), worker, time.Hour, ca.ErrBadCSR, "ECDSA P-384"},
		{"Ed25519 key", csrFor(t, edKey), worker, time.Hour, ca.ErrBadCSR, "Ed25519"},
		{"not a CSR", []byte("garbage"), worker, time.Hour, ca.ErrBadCSR, "not a DER PKCS#10 request"},
		{"tampered signature", tampered, worker, time.Hour, ca.ErrBadCSR, "signature does not verify"},
		{"empty node ID", goodCSR, ca.Identity{ClusterID: "cluster-a", Role: ca.RoleWorker}, time.Hour, ca.ErrInvalidIdentity, "node ID empty"},
		{"unknown role", goodCSR, ca.Identity{NodeID: "w1", ClusterID: "cluster-a", Role: "admin"}, time.Hour, ca.ErrInvalidIdentity, `role "admin"`},
		{"other cluster", goodCSR, ca.Identity{NodeID: "w1", ClusterID: "cluster-b", Role: ca.RoleWorker}, time.Hour, ca.ErrInvalidIdentity, `cluster "cluster-b"`},
		{"zero lifetime", goodCSR, worker, 0, errAny, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := root.IssueCertificate(tt.csr, tt.id, time.Now(), tt.ttl)
			checkErr(t, "IssueCertificate", err, tt.want)
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %q does not mention %q", err, tt.message)
			}
		})
	}
}

func TestIdentityFromCertRefusesNonNodeCertificates(t *testing.T) {
	root := newRoot(t, "cluster-a")
	tests := []struct {
		name string
		cert *x509.Certificate
	}{
		{"nil", nil},
		{"root certificate has no role", root.Cert},
		{"unknown role", &x509.Certificate{Subject: pkix.Name{CommonName: "n", Organization: []string{"c"}, OrganizationalUnit: []string{"admin"}}}},
		{"two roles", &x509.Certificate{Subject: pkix.Name{CommonName: "n", Organization: []string{"c"}, OrganizationalUnit: []string{"shoal-worker", "shoal-manager"}}}},
		{"no node ID", &x509.Certificate{Subject: pkix.Name{Organization: []string{"c"}, OrganizationalUnit: []string{"shoal-worker"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.IdentityFromCert(tt.cert)
			checkErr(t, "IdentityFromCert", err, ca.ErrInvalidIdentity)
		})
	}
}

func csrFor(t *testing.T, key any) []byte {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return csr
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}
