package ca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
)

// Credentials are a node's current key and certificate plus the cluster
// root. The key and certificate can be swapped at run time with Replace;
// every TLS configuration built from Credentials reads the current ones on
// each handshake. Create them with NewCredentials or LoadCredentials; the
// zero value is not usable. Safe for concurrent use.
type Credentials struct {
	current atomic.Pointer[credState]
}

// credState is one immutable snapshot; Replace swaps in a new one whole, so a
// handshake never sees a certificate with the wrong key.
type credState struct {
	cert    tls.Certificate
	certPEM []byte
	keyPEM  []byte
	id      Identity
	root    *x509.Certificate
	rootPEM []byte
	pool    *x509.CertPool
}

// NewCredentials builds credentials from a PEM node certificate, its PEM
// private key and the PEM root certificate. The key must belong to the
// certificate (ErrBadKey), the certificate must be signed by the root and
// name the root's cluster (ErrUntrusted), and its subject must be a shoal
// identity (ErrInvalidIdentity).
//
// The validity period is not checked here, so a node whose certificate
// expired while it was down can still load it and report that; handshakes
// refuse expired certificates.
func NewCredentials(certPEM, keyPEM, rootPEM []byte) (*Credentials, error) {
	root, err := ParseRootCert(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("node credentials: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	st, err := newState(certPEM, keyPEM, root, pool, bytes.Clone(rootPEM))
	if err != nil {
		return nil, fmt.Errorf("node credentials: %w", err)
	}
	c := &Credentials{}
	c.current.Store(st)
	return c, nil
}

// newState parses and validates a key pair against root.
func newState(certPEM, keyPEM []byte, root *x509.Certificate, pool *x509.CertPool, rootPEM []byte) (*credState, error) {
	leaf, err := parseCertPEM(certPEM, "node certificate")
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	if !keyMatches(leaf, key) {
		return nil, fmt.Errorf("%w: the node key does not belong to certificate %q; "+
			"node.crt and node.key must be written together", ErrBadKey, leaf.Subject.CommonName)
	}
	if err := leaf.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%w: certificate %q is not signed by the cluster root (fingerprint %s): %w",
			ErrUntrusted, leaf.Subject.CommonName, Fingerprint(root.Raw), err)
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return nil, err
	}
	if id.ClusterID != root.Subject.Organization[0] {
		return nil, fmt.Errorf("%w: certificate %q names cluster %q but the root belongs to cluster %q",
			ErrUntrusted, id.NodeID, id.ClusterID, root.Subject.Organization[0])
	}
	return &credState{
		cert:    tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf},
		certPEM: bytes.Clone(certPEM),
		keyPEM:  bytes.Clone(keyPEM),
		id:      id,
		root:    root,
		rootPEM: rootPEM,
		pool:    pool,
	}, nil
}

// Replace swaps in a new certificate and key (after renewal or a role
// change). They are validated like in NewCredentials against the same root
// and must belong to the same node; on error nothing changes. The next
// handshake of every TLS configuration built from c uses the new pair;
// established connections keep the old one. Replace does not write to disk:
// call Save for that.
func (c *Credentials) Replace(certPEM, keyPEM []byte) error {
	old := c.current.Load()
	st, err := newState(certPEM, keyPEM, old.root, old.pool, old.rootPEM)
	if err != nil {
		return fmt.Errorf("replace node certificate: %w", err)
	}
	if st.id.NodeID != old.id.NodeID {
		return fmt.Errorf("replace node certificate: %w: new certificate is for node %q, these credentials belong to %q",
			ErrInvalidIdentity, st.id.NodeID, old.id.NodeID)
	}
	c.current.Store(st)
	return nil
}

// Leaf returns the current node certificate. Callers must not modify it.
func (c *Credentials) Leaf() *x509.Certificate {
	return c.current.Load().cert.Leaf
}

// Identity returns what the current certificate says about this node.
func (c *Credentials) Identity() Identity {
	return c.current.Load().id
}

// RootPool returns a new pool holding the cluster root. Callers may modify it.
func (c *Credentials) RootPool() *x509.CertPool {
	return c.current.Load().pool.Clone()
}

// RootPEM returns the cluster root certificate in PEM form.
func (c *Credentials) RootPEM() []byte {
	return bytes.Clone(c.current.Load().rootPEM)
}

// RootFingerprint returns the fingerprint of the cluster root, the one join
// tokens carry.
func (c *Credentials) RootFingerprint() string {
	return Fingerprint(c.current.Load().root.Raw)
}

// certificate returns the current key pair for the TLS callbacks.
func (c *Credentials) certificate() *tls.Certificate {
	return &c.current.Load().cert
}
