package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"shoal/manager/ca"
)

func TestRootCARoundTrip(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	root, err := ca.NewRootCA("cluster-a", now)
	if err != nil {
		t.Fatalf("NewRootCA: %v", err)
	}
	cert := root.Cert
	if !cert.IsCA || !cert.BasicConstraintsValid {
		t.Fatalf("root IsCA = %v, BasicConstraintsValid = %v, want both true", cert.IsCA, cert.BasicConstraintsValid)
	}
	if got, want := cert.Subject.CommonName, "shoal root CA"; got != want {
		t.Fatalf("root CN = %q, want %q", got, want)
	}
	if got, want := root.ClusterID(), "cluster-a"; got != want {
		t.Fatalf("root cluster ID = %q, want %q", got, want)
	}
	if got, want := cert.NotAfter, now.AddDate(20, 0, 0); got.Before(want.Add(-7*24*time.Hour)) || got.After(want) {
		t.Fatalf("root NotAfter = %v, want about 20 years after %v", got, now)
	}
	if !cert.NotBefore.Before(now) {
		t.Fatalf("root NotBefore = %v, want before %v", cert.NotBefore, now)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("root key is %T, want ECDSA P-256", cert.PublicKey)
	}

	fp := root.Fingerprint()
	sum := sha256.Sum256(cert.Raw)
	if want := hex.EncodeToString(sum[:]); fp != want {
		t.Fatalf("Fingerprint = %q, want %q", fp, want)
	}
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Fatalf("Fingerprint = %q, want 64 lowercase hex characters", fp)
	}

	parsed, err := ca.ParseRootCA(root.CertPEM, root.KeyPEM)
	if err != nil {
		t.Fatalf("ParseRootCA: %v", err)
	}
	if parsed.Fingerprint() != fp {
		t.Fatalf("parsed fingerprint = %q, want %q", parsed.Fingerprint(), fp)
	}
	// The parsed CA must sign certificates that the original root trusts.
	certPEM, keyPEM := issue(t, parsed, "n1", ca.RoleWorker)
	if _, err := ca.NewCredentials(certPEM, keyPEM, root.CertPEM); err != nil {
		t.Fatalf("certificate from the parsed CA: NewCredentials: %v", err)
	}
	rootCert, err := ca.ParseRootCert(root.CertPEM)
	if err != nil {
		t.Fatalf("ParseRootCert: %v", err)
	}
	if ca.Fingerprint(rootCert.Raw) != fp {
		t.Fatalf("ParseRootCert fingerprint = %q, want %q", ca.Fingerprint(rootCert.Raw), fp)
	}
}

func TestParseRootCARefuses(t *testing.T) {
	a := newRoot(t, "cluster-a")
	b := newRoot(t, "cluster-b")
	nodeCert, nodeKey := issue(t, a, "n1", ca.RoleManager)
	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		want    error
		message string
	}{
		{"key of another root", a.CertPEM, b.KeyPEM, ca.ErrBadKey, "does not belong to the root certificate"},
		{"node certificate as root", nodeCert, nodeKey, ca.ErrBadCertificate, "not a CA certificate"},
		{"garbage certificate", []byte("hello"), a.KeyPEM, ca.ErrBadCertificate, "no PEM CERTIFICATE block"},
		{"garbage key", a.CertPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), ca.ErrBadKey, "bad private key"},
		{"certificate as key", a.CertPEM, a.CertPEM, ca.ErrBadKey, `"CERTIFICATE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.ParseRootCA(tt.cert, tt.key)
			checkErr(t, "ParseRootCA", err, tt.want)
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %q does not mention %q", err, tt.message)
			}
		})
	}
}

func TestNewRootCARequiresClusterID(t *testing.T) {
	_, err := ca.NewRootCA("", time.Now())
	checkErr(t, "NewRootCA(\"\")", err, ca.ErrInvalidIdentity)
}
