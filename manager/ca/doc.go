// Package ca is shoal's trust layer: the cluster's root certificate
// authority, join tokens, node certificates and the TLS configurations built
// from them.
//
// Every node holds a key and a certificate signed by the cluster root. The
// certificate names its holder: CN = node ID, O = cluster ID, OU = role
// (shoal-manager, shoal-worker or shoal-client). Servers learn who is calling
// from that certificate (PeerIdentity) and enforce roles on top of it.
//
// Certificates carry no DNS or IP names: nodes are identified by their
// certificate, not by the address they were dialled on, so clients check the
// server's chain against the cluster root and its role instead of a hostname.
//
// A joining node trusts nothing until it has checked the root certificate's
// SHA-256 fingerprint against the one printed in its join token
// (BootstrapTLS, then TrustRootTLS). After that it uses Credentials, whose
// certificate can be replaced at run time (renewal, promotion) without
// rebuilding any TLS configuration.
package ca

import "errors"

// Errors returned by this package. They are always wrapped with a message
// that says what was wrong and how to fix it; test for them with errors.Is.
var (
	// ErrInvalidToken means a join token is malformed. The wrapping message
	// names the part that is wrong and the expected shape.
	ErrInvalidToken = errors.New("invalid join token")

	// ErrWrongRole means the peer's certificate is valid but carries a role
	// that is not allowed for this connection.
	ErrWrongRole = errors.New("wrong role")

	// ErrUntrusted means a certificate does not chain to the cluster root:
	// it was signed by another cluster's CA, by no CA at all, or it has
	// expired.
	ErrUntrusted = errors.New("untrusted certificate")

	// ErrBadCSR means a certificate signing request cannot be signed: it does
	// not parse, its signature does not verify, or its key is not ECDSA P-256.
	ErrBadCSR = errors.New("bad certificate signing request")

	// ErrBadCertificate means certificate bytes are not a PEM certificate of
	// the expected kind (for example a node certificate where the root CA
	// certificate was expected).
	ErrBadCertificate = errors.New("bad certificate")

	// ErrBadKey means private key bytes do not parse, hold an unsupported
	// key type, or do not belong to the certificate they come with.
	ErrBadKey = errors.New("bad private key")

	// ErrInvalidIdentity means an identity is incomplete or inconsistent:
	// a certificate subject that does not describe a shoal node, an unknown
	// role, or an identity that belongs to another cluster or node.
	ErrInvalidIdentity = errors.New("invalid identity")
)
