package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// alpnH2 is offered and accepted on the gRPC port (gRPC requires HTTP/2).
var alpnH2 = []string{"h2"}

// ServerTLS returns the configuration for the gRPC port. The server presents
// the current node certificate (read on every handshake). A client
// certificate is optional, because joining nodes have none yet, but when one
// is given it must chain to the cluster root; the gRPC layer then enforces
// roles with PeerIdentity.
func (c *Credentials) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     alpnH2,
		GetCertificate: c.getCertificate,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      c.current.Load().pool,
	}
}

// ClientTLS returns the configuration to dial another node's gRPC port. It
// presents the current node certificate and accepts the server only if its
// certificate chains to our root and carries one of the roles in want
// (RoleManager when want is empty). Failures wrap ErrUntrusted or
// ErrWrongRole.
//
// Certificates carry no host names, so Go's hostname verification is
// switched off (InsecureSkipVerify) and replaced by the chain and role check
// in VerifyConnection; the connection is as strongly authenticated as with
// the default verifier, by identity instead of by address.
func (c *Credentials) ClientTLS(want ...Role) *tls.Config {
	st := c.current.Load()
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		NextProtos:           alpnH2,
		GetClientCertificate: c.getClientCertificate,
		InsecureSkipVerify:   true, // replaced by VerifyConnection, see above
		VerifyConnection:     verifyServer(st.pool, st.root.Subject.Organization[0], want),
	}
}

// PeerTLS returns the server and client configurations for the Raft port,
// where both sides must hold a certificate of the given role. The server
// requires a client certificate chaining to the root and refuses one with
// another role (ErrWrongRole); the client is ClientTLS(role) without ALPN.
func (c *Credentials) PeerTLS(role Role) (server, client *tls.Config) {
	server = &tls.Config{
		MinVersion:       tls.VersionTLS12,
		GetCertificate:   c.getCertificate,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        c.current.Load().pool,
		VerifyConnection: verifyClientRole(role),
	}
	client = c.ClientTLS(role)
	client.NextProtos = nil
	return server, client
}

// BootstrapTLS returns a configuration that presents no certificate and
// trusts any server. Use it ONLY to call NodeCA.GetRootCA while joining, and
// trust nothing that call returns until its fingerprint matches the one in
// the join token.
func BootstrapTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         alpnH2,
		InsecureSkipVerify: true, // the root is not known yet; see above
	}
}

// TrustRootTLS returns a configuration that presents no certificate and
// accepts the server only if it chains to root and has one of the roles in
// want (RoleManager when empty). It is the second step of a join (after the
// root's fingerprint was checked) and serves remote CLIs that only know the
// root.
func TrustRootTLS(root *x509.Certificate, want ...Role) *tls.Config {
	pool := x509.NewCertPool()
	clusterID := ""
	if root != nil {
		pool.AddCert(root)
		if len(root.Subject.Organization) == 1 {
			clusterID = root.Subject.Organization[0]
		}
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         alpnH2,
		InsecureSkipVerify: true, // replaced by VerifyConnection, as in ClientTLS
		VerifyConnection:   verifyServer(pool, clusterID, want),
	}
}

// ClientCertTLS returns a client configuration for a remote CLI holding a
// certificate, key and root read from files. The inputs are validated like
// in NewCredentials, and the server is checked like in ClientTLS.
func ClientCertTLS(certPEM, keyPEM, rootPEM []byte, want ...Role) (*tls.Config, error) {
	c, err := NewCredentials(certPEM, keyPEM, rootPEM)
	if err != nil {
		return nil, err
	}
	return c.ClientTLS(want...), nil
}

func (c *Credentials) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.certificate(), nil
}

func (c *Credentials) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.certificate(), nil
}

// verifyServer returns a VerifyConnection callback that checks the server's
// chain against pool and its role against want (RoleManager when empty).
func verifyServer(pool *x509.CertPool, clusterID string, want []Role) func(tls.ConnectionState) error {
	if len(want) == 0 {
		want = []Role{RoleManager}
	}
	want = slices.Clone(want)
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the server presented no certificate", ErrUntrusted)
		}
		leaf := cs.PeerCertificates[0]
		intermediates := x509.NewCertPool()
		for _, cert := range cs.PeerCertificates[1:] {
			intermediates.AddCert(cert)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         pool,
			Intermediates: intermediates,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return untrustedServer(leaf, clusterID, err)
		}
		id, err := IdentityFromCert(leaf)
		if err != nil {
			return fmt.Errorf("%w: server certificate: %w", ErrUntrusted, err)
		}
		if !slices.Contains(want, id.Role) {
			return fmt.Errorf("%w: server %s has role %s, expected %s; check the address points at a manager",
				ErrWrongRole, id.NodeID, id.Role, joinRoles(want))
		}
		return nil
	}
}

// untrustedServer explains why the server's certificate did not verify.
func untrustedServer(leaf *x509.Certificate, clusterID string, err error) error {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		theirs := "an unknown cluster"
		if len(leaf.Subject.Organization) == 1 {
			theirs = fmt.Sprintf("cluster %q", leaf.Subject.Organization[0])
		}
		return fmt.Errorf("%w: server certificate signed by a different cluster's CA "+
			"(it belongs to %s, we trust the root of cluster %q); check the address and the join token or ca.crt",
			ErrUntrusted, theirs, clusterID)
	}
	return fmt.Errorf("%w: server certificate %q: %w", ErrUntrusted, leaf.Subject.CommonName, err)
}

// verifyClientRole returns a server-side VerifyConnection callback that
// refuses clients whose (already chain-verified) certificate is not of role.
func verifyClientRole(role Role) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the peer presented no certificate; only %s may connect", ErrUntrusted, role)
		}
		id, err := IdentityFromCert(cs.PeerCertificates[0])
		if err != nil {
			return fmt.Errorf("%w: peer certificate: %w", ErrUntrusted, err)
		}
		if id.Role != role {
			return fmt.Errorf("%w: peer %s has role %s, expected %s; only %s may connect to this port",
				ErrWrongRole, id.NodeID, id.Role, role, role)
		}
		return nil
	}
}

// joinRoles formats roles as "a, b or c".
func joinRoles(roles []Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
