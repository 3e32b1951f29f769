package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"shoal/internal/testutil"
)

// clusterState is what a refused command must not change: every node's ID,
// role, availability and labels, as a manager lists them.
func clusterState(t *testing.T, m *testutil.Node) string {
	t.Helper()
	rows, err := m.NodeLs(t)
	if err != nil {
		t.Fatalf("node ls: %v", err)
	}
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		lines = append(lines, fmt.Sprintf("%s %s %s %s", r.ID, r.Role, r.Availability, mapString(r.Labels)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Daemon commands given bad input exit with an error that says what is
// wrong, and change neither the cluster nor a data dir.
func TestBadDaemonInput(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1)
	other := testutil.NewCluster(t, 1, 0)
	m, w := c.Managers[0], c.Workers[0]
	workerToken := c.Token(t, "worker")
	rotated := workerToken
	mustShoal(t, m, "join-token", "--rotate", "worker")
	workerToken = c.Token(t, "worker")
	fingerprint := strings.Split(workerToken, "-")[2]
	foreignToken := other.Token(t, "worker")

	// An address where something already listens on the cluster port.
	busy := testutil.FreeIP(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(busy, "2377"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	nodeFiles := func(n *testutil.Node) []byte {
		b, _ := os.ReadFile(filepath.Join(n.DataDir, "node.json"))
		return b
	}
	mFiles, wFiles := nodeFiles(m), nodeFiles(w)

	cases := []struct {
		name string
		// args builds the command; fresh is an unused node (address and
		// data dir) the command may use.
		args func(fresh *testutil.Node) []string
		want []string
		// notIn must not appear in the error (secrets).
		notIn string
	}{
		{
			name: "malformed token",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", "SHOAL-1-abc-def", "--data-dir", f.DataDir, "--advertise-addr", f.IP, m.Addr}
			},
			want: []string{"--token", "fingerprint"},
		},
		{
			name: "token with a secret outside base32",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", "SHOAL-1-" + fingerprint + "-ABCDEFGHIJKLMNOPQRSTUVWXY1", "--data-dir", f.DataDir, "--advertise-addr", f.IP, m.Addr}
			},
			want:  []string{"--token", "secret"},
			notIn: "ABCDEFGHIJKLMNOPQRSTUVWXY1",
		},
		{
			name: "token of another cluster",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", foreignToken, "--data-dir", f.DataDir, "--advertise-addr", f.IP, m.Addr}
			},
			want: []string{"another cluster", "fingerprint"},
		},
		{
			name: "rotated token",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", rotated, "--data-dir", f.DataDir, "--advertise-addr", f.IP, m.Addr}
			},
			want: []string{"token", "rotated", "shoal join-token"},
		},
		{
			name: "join into a data dir that holds a node",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", workerToken, "--data-dir", w.DataDir, "--advertise-addr", f.IP, m.Addr}
			},
			want: []string{w.DataDir, "already holds", "shoal daemon"},
		},
		{
			name: "init in a data dir that holds a node",
			args: func(f *testutil.Node) []string {
				return []string{"init", "--data-dir", m.DataDir, "--advertise-addr", f.IP}
			},
			want: []string{m.DataDir, "already holds", "shoal daemon"},
		},
		{
			name: "join on an address in use",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", workerToken, "--data-dir", f.DataDir, "--advertise-addr", busy, m.Addr}
			},
			want: []string{busy + ":2377", "address already in use", "--advertise-addr"},
		},
		{
			name: "init on an address in use",
			args: func(f *testutil.Node) []string {
				return []string{"init", "--data-dir", f.DataDir, "--advertise-addr", busy}
			},
			want: []string{busy + ":2377", "address already in use", "--advertise-addr"},
		},
		{
			name: "join an address where no manager runs",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", workerToken, "--data-dir", f.DataDir, "--advertise-addr", f.IP, testutil.FreeIP(t)}
			},
			want: []string{"cannot reach a manager"},
		},
		{
			name: "advertise address that is not an IP",
			args: func(f *testutil.Node) []string {
				return []string{"join", "--token", workerToken, "--data-dir", f.DataDir, "--advertise-addr", "node-a", m.Addr}
			},
			want: []string{"--advertise-addr", "node-a", "not an IP"},
		},
		{
			name: "certificate lifetime below the minimum",
			args: func(f *testutil.Node) []string {
				return []string{"init", "--data-dir", f.DataDir, "--advertise-addr", f.IP, "--cert-expiry", "5s"}
			},
			want: []string{"--cert-expiry", "30s"},
		},
		{
			name: "daemon on an empty data dir",
			args: func(f *testutil.Node) []string {
				return []string{"daemon", "--data-dir", f.DataDir}
			},
			want: []string{"no node", "shoal init", "shoal join"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := clusterState(t, m)
			fresh := c.NewNode(t, "x")
			_, err := testutil.Run(t, tc.args(fresh)...)
			wantError(t, tc.name, err, tc.want...)
			if tc.notIn != "" && errorProblem(err, tc.notIn) == "" {
				t.Fatalf("the error repeats the token's secret: %v", err)
			}
			if hasNode(fresh.DataDir) {
				t.Fatalf("a refused command left a node in %s", fresh.DataDir)
			}
			if !bytes.Equal(nodeFiles(m), mFiles) || !bytes.Equal(nodeFiles(w), wFiles) {
				t.Fatalf("a refused command changed node.json of an existing node")
			}
			if !m.Running() || !w.Running() {
				t.Fatalf("a refused command stopped a running node")
			}
			if after := clusterState(t, m); after != before {
				t.Fatalf("a refused command changed the cluster:\n%s\nwas:\n%s", after, before)
			}
		})
	}
	c.WaitHealthy(t)
}

// cliCase is a command that must be refused with an error holding want.
type cliCase struct {
	name string
	args []string
	want []string
}

// refused runs each case on m as a subtest: the command must fail with an
// error holding every part of its want, and leave state (what a refused
// command must not change) as it was.
func refused(t *testing.T, m *testutil.Node, cases []cliCase, state func(t *testing.T) string) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := state(t)
			_, err := m.Shoal(t, tc.args...)
			wantError(t, tc.name, err, tc.want...)
			if after := state(t); after != before {
				t.Fatalf("a refused command changed what it must not:\n%s\nwas:\n%s", after, before)
			}
		})
	}
}

// CLI commands given bad input print an error that says what is wrong and
// change nothing.
func TestBadCLIInput(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 2)
	m, w := c.Managers[0], c.Workers[0]
	wID := w.ID(t)
	mustShoal(t, m, "node", "update", "--label-add", "zone=a", wID)
	r, err := row(t, m, wID)
	if err != nil {
		t.Fatal(err)
	}
	hostname := r.Hostname

	cases := []cliCase{
		{"unknown node", []string{"node", "inspect", "no-such-node"}, []string{"no-such-node", "not found"}},
		{"update of an unknown node", []string{"node", "update", "--label-add", "a=b", "no-such-node"}, []string{"no-such-node", "not found"}},
		{"promote of an unknown node", []string{"node", "promote", "no-such-node"}, []string{"no-such-node", "not found"}},
		{"rm of an unknown node", []string{"node", "rm", "--force", "no-such-node"}, []string{"no-such-node", "not found"}},
		{"empty node reference", []string{"node", "inspect", ""}, []string{"missing node"}},
		{"empty node reference in an update", []string{"node", "update", "--label-add", "a=b", ""}, []string{"missing node"}},
		{"reference matching every node (shared hostname)", []string{"node", "update", "--label-add", "a=b", hostname}, []string{"ambiguous", wID}},
		{"availability sometimes", []string{"node", "update", "--availability", "sometimes", wID}, []string{"--availability", "sometimes", "active, pause, drain"}},
		{"removal of a label the node lacks", []string{"node", "update", "--label-rm", "nosuch", wID}, []string{"--label-rm", "nosuch"}},
		{"unknown label removal with an addition", []string{"node", "update", "--label-add", "new=1", "--label-rm", "nosuch", wID}, []string{"--label-rm", "nosuch"}},
		{"label without a key", []string{"node", "update", "--label-add", "=v", wID}, []string{"--label-add", "KEY=VALUE"}},
		{"update without a change", []string{"node", "update", wID}, []string{"nothing to update"}},
		{"unknown filter", []string{"node", "ls", "--filter", "colour=red"}, []string{"colour", "unknown filter"}},
		{"join token of an unknown role", []string{"join-token", "admin"}, []string{"admin", "worker", "manager"}},
	}
	// Two IDs sharing their first character make an ambiguous prefix.
	ids := nodeIDs(t, m)
	for i := 1; i < len(ids); i++ {
		if ids[i][0] == ids[i-1][0] {
			prefix := ids[i][:1]
			cases = append(cases, cliCase{"ambiguous ID prefix", []string{"node", "update", "--label-add", "a=b", prefix}, []string{"ambiguous", ids[i-1], ids[i]}})
			break
		}
	}
	refused(t, m, cases, func(t *testing.T) string { return clusterState(t, m) })
	if len(cases) > 0 && cases[len(cases)-1].name != "ambiguous ID prefix" {
		t.Logf("no two of the node IDs %v share a first character; the ambiguous-prefix case ran only as a shared hostname", ids)
	}
}
