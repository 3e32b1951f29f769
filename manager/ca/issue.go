package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"

	"shoal/internal/ids"
)

// IssueCertificate signs a node certificate for id over the public key of
// csrDER, a DER-encoded PKCS#10 request.
//
// The CSR's signature must verify and its key must be ECDSA P-256, otherwise
// the error wraps ErrBadCSR. The CSR's subject and extensions are ignored:
// the certificate says only what id says (CN = NodeID, O = ClusterID,
// OU = Role), so a node cannot choose its own identity. id must be complete
// and belong to this root's cluster (ErrInvalidIdentity).
//
// The certificate is valid for both client and server authentication, has a
// random 128-bit serial, NotBefore = now-1m and NotAfter = now+ttl, capped at
// the root's own expiry. It carries no DNS or IP names.
func (r *RootCA) IssueCertificate(csrDER []byte, id Identity, now time.Time, ttl time.Duration) (certPEM []byte, err error) {
	if err := id.validate(); err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	if id.ClusterID != r.ClusterID() {
		return nil, fmt.Errorf("issue certificate: %w: node %s names cluster %q but this CA belongs to cluster %q",
			ErrInvalidIdentity, id.NodeID, id.ClusterID, r.ClusterID())
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("issue certificate for %s: lifetime %s must be positive", id.NodeID, ttl)
	}
	csr, err := parseCSR(csrDER)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", id.NodeID, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", id.NodeID, err)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(r.Cert.NotAfter) {
		notAfter = r.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         id.NodeID,
			Organization:       []string{id.ClusterID},
			OrganizationalUnit: []string{string(id.Role)},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.Cert, csr.PublicKey, r.signer)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: sign: %w", id.NodeID, err)
	}
	return encodeCert(der), nil
}

// NodeIDForCSR is the ID of the node that asks to join with csrDER: derived
// from its public key, so that a join retried with the same request (its
// first answer was lost) names the same node instead of making another.
func NodeIDForCSR(csrDER []byte) (string, error) {
	csr, err := parseCSR(csrDER)
	if err != nil {
		return "", err
	}
	return ids.Of(csr.RawSubjectPublicKeyInfo), nil
}

// parseCSR parses csrDER, checks its self-signature and that it asks for an
// ECDSA P-256 key.
func parseCSR(csrDER []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: not a DER PKCS#10 request (%w); generate it with ca.NewKeyAndCSR", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify, the request was altered or signed with another key: %w",
			ErrBadCSR, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is %s, shoal accepts only ECDSA P-256", ErrBadCSR, csr.PublicKeyAlgorithm)
	}
	if pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key is ECDSA %s, shoal accepts only ECDSA P-256", ErrBadCSR, pub.Curve.Params().Name)
	}
	return csr, nil
}

// NewKeyAndCSR generates a fresh ECDSA P-256 key and a certificate signing
// request for it. keyPEM is the PKCS#8 PEM private key, which never leaves
// the node; csrDER is sent to a manager. The CSR's subject is empty: the
// manager decides the identity.
func NewKeyAndCSR() (keyPEM, csrDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, csrDER, nil
}
