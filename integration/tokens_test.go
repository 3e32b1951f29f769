package integration

import (
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"shoal/internal/testutil"
	"shoal/manager/ca"
	shoalpb "shoal/proto"
)

var tokenPattern = regexp.MustCompile(`^SHOAL-1-[0-9a-f]{64}-[a-z2-7]{26}$`)

// join-token -q prints the token alone; --rotate replaces it: the old one is
// refused with a clear message, the new one joins.
func TestJoinTokenRotate(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 0)
	m := c.Managers[0]

	out := mustShoal(t, m, "join-token", "-q", "worker")
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 || !tokenPattern.MatchString(strings.TrimSpace(out)) {
		t.Fatalf("join-token -q worker printed %q, want one line holding only the token", out)
	}
	old := strings.TrimSpace(out)
	managerToken := strings.TrimSpace(mustShoal(t, m, "join-token", "-q", "manager"))
	if managerToken == old {
		t.Fatalf("the worker and manager tokens are the same")
	}

	out = mustShoal(t, m, "join-token", "--rotate", "worker")
	fresh := strings.TrimSpace(mustShoal(t, m, "join-token", "-q", "worker"))
	if fresh == old || !tokenPattern.MatchString(fresh) {
		t.Fatalf("after --rotate the worker token is %q (was %q)", fresh, old)
	}
	if !strings.Contains(out, fresh) {
		t.Fatalf("join-token --rotate printed %q, which lacks the new token", out)
	}
	if got := strings.TrimSpace(mustShoal(t, m, "join-token", "-q", "manager")); got != managerToken {
		t.Fatalf("rotating the worker token changed the manager token")
	}

	before := nodeIDs(t, m)
	n := c.NewNode(t, "w")
	_, err := testutil.Run(t, "join", "--token", old, "--data-dir", n.DataDir, "--advertise-addr", n.IP, m.Addr)
	wantError(t, "join with the rotated token", err, "token", "rotated", "shoal join-token")
	if hasNode(n.DataDir) {
		t.Fatalf("a refused join left a node in %s", n.DataDir)
	}
	if after := nodeIDs(t, m); !slices.Equal(after, before) {
		t.Fatalf("a refused join changed the nodes: %v, was %v", after, before)
	}

	n.Start(t, "join", "--token", fresh, "--data-dir", n.DataDir, "--advertise-addr", n.IP, m.Addr)
	c.Workers = append(c.Workers, n)
	c.WaitHealthy(t)
	if r, err := row(t, m, n.ID(t)); err != nil || r.Role != "worker" {
		t.Fatalf("the node joined with the new token: %+v, %v; want a worker", r, err)
	}
}

// A join whose answer was lost is retried with the same request; the manager
// names the node after the request's key, so the retry gets the same node
// and the cluster does not gain a phantom one.
func TestRetriedJoinNamesTheSameNode(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 0)
	m := c.Managers[0]
	token := strings.TrimSpace(mustShoal(t, m, "join-token", "-q", "worker"))
	ctx := callCtx(t)

	boot, err := grpc.NewClient(m.Addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.BootstrapTLS())))
	if err != nil {
		t.Fatal(err)
	}
	defer boot.Close()
	rootResp, err := shoalpb.NewNodeCAClient(boot).GetRootCA(ctx, &shoalpb.GetRootCARequest{})
	if err != nil {
		t.Fatalf("GetRootCA: %v", err)
	}
	root, err := ca.ParseRootCert(rootResp.CertPem)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(m.Addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.TrustRootTLS(root, ca.RoleManager))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	req := &shoalpb.IssueNodeCertificateRequest{Token: token, Csr: csr, Addr: net.JoinHostPort(testutil.FreeIP(t), "2377")}
	var ids []string
	for range 2 {
		resp, err := shoalpb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, req)
		if err != nil {
			t.Fatalf("IssueNodeCertificate: %v", err)
		}
		ids = append(ids, resp.NodeId)
	}
	if ids[0] != ids[1] {
		t.Fatalf("the same join request twice made nodes %s and %s, want one node", ids[0], ids[1])
	}
	if got := nodeIDs(t, m); len(got) != 2 || !slices.Contains(got, ids[0]) {
		t.Fatalf("after the retried join the cluster lists %v, want the manager and %s", got, ids[0])
	}
}
