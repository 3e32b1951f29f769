package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is what a certificate allows its holder to do. It is stored in the
// certificate's OU, so a role change needs a new certificate.
type Role string

// The roles a shoal certificate can carry.
const (
	// RoleManager is held by managers: they run Raft, the control API and
	// the dispatcher.
	RoleManager Role = "shoal-manager"
	// RoleWorker is held by nodes that only run tasks.
	RoleWorker Role = "shoal-worker"
	// RoleClient is held by remote CLI users; it grants the control API only.
	RoleClient Role = "shoal-client"
)

// known reports whether r is one of the roles above.
func (r Role) known() bool {
	switch r {
	case RoleManager, RoleWorker, RoleClient:
		return true
	}
	return false
}

// Identity is what a certificate says about its holder:
// CN = NodeID, O = ClusterID, OU = Role.
type Identity struct {
	NodeID    string
	ClusterID string
	Role      Role
}

// validate checks that every field is set and the role is known.
func (id Identity) validate() error {
	var missing []string
	if id.NodeID == "" {
		missing = append(missing, "node ID")
	}
	if id.ClusterID == "" {
		missing = append(missing, "cluster ID")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s empty", ErrInvalidIdentity, strings.Join(missing, " and "))
	}
	if !id.Role.known() {
		return fmt.Errorf("%w: role %q is not one of %s, %s, %s",
			ErrInvalidIdentity, id.Role, RoleManager, RoleWorker, RoleClient)
	}
	return nil
}

// IdentityFromCert reads the identity out of a node certificate's subject.
// It requires a non-empty CN, exactly one O and exactly one OU naming a known
// role; otherwise it returns an error wrapping ErrInvalidIdentity. It does
// not check the signature: callers that need trust verify the chain first.
func IdentityFromCert(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrInvalidIdentity)
	}
	s := cert.Subject
	if len(s.Organization) != 1 || len(s.OrganizationalUnit) != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %q has %d O and %d OU fields, "+
			"a shoal node certificate has exactly one of each (cluster ID and role)",
			ErrInvalidIdentity, s.CommonName, len(s.Organization), len(s.OrganizationalUnit))
	}
	id := Identity{NodeID: s.CommonName, ClusterID: s.Organization[0], Role: Role(s.OrganizationalUnit[0])}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("certificate %q: %w", s.CommonName, err)
	}
	return id, nil
}

// PeerIdentity returns the identity of the caller of a gRPC method, taken
// from the client certificate that the TLS handshake verified. It returns
// false when the connection is not TLS, the caller presented no certificate,
// or the certificate does not describe a shoal node.
func PeerIdentity(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, false
	}
	// VerifiedChains is only set when the server verified the certificate
	// (ServerTLS, PeerTLS); an unverified certificate proves nothing.
	if len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return Identity{}, false
	}
	id, err := IdentityFromCert(info.State.PeerCertificates[0])
	if err != nil {
		return Identity{}, false
	}
	return id, true
}
