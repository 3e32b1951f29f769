package integration

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"shoal/internal/testutil"
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
