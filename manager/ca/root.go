package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"time"
)

const (
	rootCommonName = "shoal root CA"
	rootLifetime   = 20 * 365 * 24 * time.Hour
	// backdate absorbs small clock differences between the issuer and the
	// nodes that check a fresh certificate.
	backdate = time.Minute
)

// RootCA is the cluster's certificate authority: the self-signed root
// certificate and, to sign node certificates, its private key. Every manager
// holds it (it is replicated in the Cluster object).
type RootCA struct {
	// Cert is the parsed root certificate.
	Cert *x509.Certificate
	// CertPEM is Cert in PEM form, as handed to joining nodes.
	CertPEM []byte
	// KeyPEM is the root's private key in PEM form. It is a secret: it lets
	// its holder mint certificates for any node of the cluster.
	KeyPEM []byte

	signer crypto.Signer
}

// NewRootCA creates a root CA for clusterID with a fresh ECDSA P-256 key. The
// certificate is self-signed, has CN "shoal root CA" and O clusterID, and is
// valid for 20 years from now (backdated one minute for clock skew).
func NewRootCA(clusterID string, now time.Time) (*RootCA, error) {
	if clusterID == "" {
		return nil, fmt.Errorf("create root CA: %w: cluster ID empty", ErrInvalidIdentity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create root CA: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: rootCommonName, Organization: []string{clusterID}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create root CA: sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	return &RootCA{Cert: cert, CertPEM: encodeCert(der), KeyPEM: keyPEM, signer: key}, nil
}

// ParseRootCA loads a root CA from its PEM certificate and key, as stored in
// the Cluster object. It refuses a certificate that is not a CA
// (ErrBadCertificate) and a key that does not belong to it (ErrBadKey).
func ParseRootCA(certPEM, keyPEM []byte) (*RootCA, error) {
	cert, err := ParseRootCert(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse root CA key: %w", err)
	}
	if !keyMatches(cert, key) {
		return nil, fmt.Errorf("parse root CA: %w: the private key does not belong to the root certificate "+
			"(fingerprint %s); the two were taken from different clusters", ErrBadKey, Fingerprint(cert.Raw))
	}
	return &RootCA{Cert: cert, CertPEM: encodeCert(cert.Raw), KeyPEM: keyPEM, signer: key}, nil
}

// ParseRootCert parses a root CA certificate (the first CERTIFICATE block of
// certPEM). It returns ErrBadCertificate if the bytes do not parse or the
// certificate is not a CA naming a cluster in its O.
func ParseRootCert(certPEM []byte) (*x509.Certificate, error) {
	cert, err := parseCertPEM(certPEM, "root certificate")
	if err != nil {
		return nil, fmt.Errorf("parse root certificate: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("parse root certificate: %w: %q is not a CA certificate; "+
			"pass the cluster's ca.crt, not a node certificate", ErrBadCertificate, cert.Subject.CommonName)
	}
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] == "" {
		return nil, fmt.Errorf("parse root certificate: %w: %q does not name a cluster ID in its O field",
			ErrBadCertificate, cert.Subject.CommonName)
	}
	return cert, nil
}

// Fingerprint returns the lowercase hex SHA-256 of a certificate's DER bytes
// (64 characters). Join tokens carry the root's fingerprint.
func Fingerprint(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return hex.EncodeToString(sum[:])
}

// Fingerprint returns the root certificate's fingerprint (see Fingerprint).
func (r *RootCA) Fingerprint() string {
	return Fingerprint(r.Cert.Raw)
}

// ClusterID returns the cluster ID the root was created for (its O).
func (r *RootCA) ClusterID() string {
	return r.Cert.Subject.Organization[0]
}

// Pool returns a new certificate pool holding only the root. Callers may
// modify it.
func (r *RootCA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(r.Cert)
	return pool
}

// randomSerial returns a random, positive 128-bit certificate serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	serial, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	return serial, nil
}
