package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	shoalpb "shoal/proto"
)

// join admits this node to a cluster: check the manager's CA against the
// token's fingerprint, get a certificate, and write the node's files. Nothing
// is written unless the manager accepted the node.
func (n *Node) join(ctx context.Context) error {
	token, err := ca.ParseToken(n.cfg.JoinToken)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	if n.cfg.JoinAddr == "" {
		return errors.New("MANAGER_ADDR: give the address of a manager, e.g. 'shoal join --token T 127.0.0.2:2377'")
	}
	joinAddr, err := withPort("MANAGER_ADDR", n.cfg.JoinAddr, DefaultPort)
	if err != nil {
		return err
	}
	if err := checkFresh(n.cfg.DataDir); err != nil {
		return err
	}
	adv, lis, err := resolveAddrs(n.cfg.AdvertiseAddr, n.cfg.ListenAddr)
	if err != nil {
		return err
	}
	// Fail on a taken address before the cluster learns about this node.
	for _, port := range portsToCheck(lis, n.cfg.GossipPort) {
		ln, err := listenTCP(port.what, port.addr)
		if err != nil {
			return err
		}
		ln.Close()
	}

	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	root, err := fetchRoot(ctx, joinAddr, token)
	if err != nil {
		return err
	}
	keyPEM, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(joinAddr, grpc.WithTransportCredentials(credentials.NewTLS(ca.TrustRootTLS(root, ca.RoleManager))))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := n.issueCertificate(ctx, shoalpb.NewNodeCAClient(conn), &shoalpb.IssueNodeCertificateRequest{
		Token: n.cfg.JoinToken, Csr: csr, Addr: adv, Description: n.description(),
	})
	if err != nil {
		return fmt.Errorf("join %s: %s", joinAddr, status.Convert(err).Message())
	}
	creds, err := ca.NewCredentials(resp.CertPem, keyPEM, resp.RootCaPem)
	if err != nil {
		return fmt.Errorf("join %s: the manager returned an unusable certificate: %w", joinAddr, err)
	}
	role := roleWorker
	if resp.Role == shoalpb.NodeRole_NODE_ROLE_MANAGER {
		role = roleManager
	}
	managers := make([]ManagerAddr, 0, len(resp.Managers))
	for _, m := range resp.Managers {
		managers = append(managers, ManagerAddr{NodeID: m.NodeId, APIAddr: m.ApiAddr, GossipAddr: m.GossipAddr})
	}
	if len(managers) == 0 {
		managers = append(managers, ManagerAddr{APIAddr: joinAddr})
	}
	n.creds = creds
	n.id = &Identity{
		NodeID: resp.NodeId, ClusterID: resp.ClusterId, Role: role,
		AdvertiseAddr: adv, ListenAddr: lis, GossipPort: n.cfg.GossipPort,
		GossipKey: resp.GossipKey, Runtime: n.cfg.Runtime, Managers: managers,
	}
	if err := creds.Save(filepath.Join(n.cfg.DataDir, certsDir)); err != nil {
		return err
	}
	return n.id.save(n.cfg.DataDir)
}

// joinRetryDelay is the pause between join attempts that found the cluster
// without a leader for a moment.
const joinRetryDelay = 250 * time.Millisecond

// issueCertificate asks for this node's certificate, again while the answer
// is Unavailable: the cluster is electing a leader, or its leader lost its
// leadership while committing the join (managers joining at the same time
// can cause that). The manager names the node after the CSR's key, so a
// retry of a join that did commit gets the same node, not a second one.
func (n *Node) issueCertificate(ctx context.Context, client shoalpb.NodeCAClient, req *shoalpb.IssueNodeCertificateRequest) (*shoalpb.IssueNodeCertificateResponse, error) {
	for {
		resp, err := client.IssueNodeCertificate(ctx, req)
		if err == nil || status.Code(err) != codes.Unavailable {
			return resp, err
		}
		n.log.Warn("join: the cluster cannot take the join right now; retrying", "err", status.Convert(err).Message())
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(joinRetryDelay):
		}
	}
}

// fetchRoot gets the cluster's root certificate from a manager and checks it
// against the fingerprint in the join token.
func fetchRoot(ctx context.Context, addr string, token ca.Token) (*x509.Certificate, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.BootstrapTLS())))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := shoalpb.NewNodeCAClient(conn).GetRootCA(ctx, &shoalpb.GetRootCARequest{}, grpc.WaitForReady(false))
	if err != nil {
		return nil, fmt.Errorf("join %s: cannot reach a manager there: %s", addr, status.Convert(err).Message())
	}
	root, err := ca.ParseRootCert(resp.CertPem)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	if got := ca.Fingerprint(root.Raw); got != token.Fingerprint {
		return nil, fmt.Errorf("join %s: the manager there belongs to another cluster than the token (CA fingerprint %.12s…, token expects %.12s…); check the address or get a token from that cluster", addr, got, token.Fingerprint)
	}
	return root, nil
}

type portCheck struct{ what, addr string }

func portsToCheck(listen string, gossipPort int) []portCheck {
	return []portCheck{
		{"cluster port", listen},
		{"gossip port", net.JoinHostPort(hostOf(listen), strconv.Itoa(gossipPort))},
	}
}
