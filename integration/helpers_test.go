// Package integration holds end-to-end tests of real shoal processes: every
// test starts its own cluster on loopback addresses of its own
// (internal/testutil) and drives it through the CLI, plus a few gRPC and TLS
// clients where a test must act like a foreign program.
package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"shoal/internal/testutil"
)

// Waits for the cluster to react (elections, gossip, heartbeats). Generous
// for a loaded 2-core CI machine; no test asserts on durations.
const (
	settle = testutil.SettleTimeout
	// downTimeout covers gossip's failure detection plus heartbeat lapses.
	downTimeout = 60 * time.Second
)

// mustShoal runs a CLI command on n and fails the test if it fails.
func mustShoal(t *testing.T, n *testutil.Node, args ...string) string {
	t.Helper()
	out, err := n.Shoal(t, args...)
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return out
}

// wantError fails the test unless err is non-nil and what the command said
// holds every one of parts.
func wantError(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if problem := errorProblem(err, parts...); problem != "" {
		t.Fatalf("%s: %s", what, problem)
	}
}

// errorProblem says why err is not an error mentioning every one of parts,
// or returns "". For a failed CLI command only its stderr counts, since the
// command line may hold the very words looked for.
func errorProblem(err error, parts ...string) string {
	if err == nil {
		return fmt.Sprintf("succeeded, want an error mentioning %q", parts)
	}
	text := err.Error()
	var cliErr *testutil.CLIError
	if errors.As(err, &cliErr) {
		text = cliErr.Stderr
	}
	for _, p := range parts {
		if !strings.Contains(text, p) {
			return fmt.Sprintf("error %q does not mention %q", text, p)
		}
	}
	return ""
}

// labels returns the labels of node ref as manager viewer sees them, in the
// form `node inspect -f '{{.Node.Spec.Labels}}'` prints: map[k:v …].
func labels(t *testing.T, viewer *testutil.Node, ref string) (string, error) {
	t.Helper()
	out, err := viewer.Shoal(t, "node", "inspect", "-f", "{{.Node.Spec.Labels}}", ref)
	return strings.TrimSpace(out), err
}

// mapString renders m like Go templates do ({{.Node.Spec.Labels}}).
func mapString(m map[string]string) string {
	return fmt.Sprint(m)
}

// waitLabels waits until viewer shows exactly want as the labels of ref.
func waitLabels(t *testing.T, viewer *testutil.Node, ref string, want map[string]string) {
	t.Helper()
	testutil.Eventually(t, settle, func() error {
		got, err := labels(t, viewer, ref)
		if err != nil {
			return err
		}
		if got != mapString(want) {
			return fmt.Errorf("%s shows labels %s on %s, want %s", viewer.Name, got, ref, mapString(want))
		}
		return nil
	})
}

// row returns the `node ls` row of node id as viewer sees it.
func row(t *testing.T, viewer *testutil.Node, id string) (testutil.NodeRow, error) {
	t.Helper()
	rows, err := viewer.NodeLs(t)
	if err != nil {
		return testutil.NodeRow{}, err
	}
	for _, r := range rows {
		if r.ID == id {
			return r, nil
		}
	}
	return testutil.NodeRow{}, fmt.Errorf("%s does not list node %s", viewer.Name, id)
}

// waitRow waits until viewer lists node id and ok accepts its row.
func waitRow(t *testing.T, viewer *testutil.Node, id string, timeout time.Duration, ok func(testutil.NodeRow) error) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		r, err := row(t, viewer, id)
		if err != nil {
			return err
		}
		return ok(r)
	})
}

func hasStatus(want string) func(testutil.NodeRow) error {
	return func(r testutil.NodeRow) error {
		if r.Status != want {
			return fmt.Errorf("node %s is %s, want %s", r.ID, r.Status, want)
		}
		return nil
	}
}

// nodeIDs lists the IDs viewer's `node ls -q` prints, sorted.
func nodeIDs(t *testing.T, viewer *testutil.Node) []string {
	t.Helper()
	out := mustShoal(t, viewer, "node", "ls", "-q")
	ids := strings.Fields(out)
	sort.Strings(ids)
	return ids
}

// others returns nodes without skip.
func others(nodes []*testutil.Node, skip ...*testutil.Node) []*testutil.Node {
	var out []*testutil.Node
	for _, n := range nodes {
		keep := true
		for _, s := range skip {
			keep = keep && n != s
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}

// dialSocket opens a gRPC connection to n's local socket.
func dialSocket(t *testing.T, n *testutil.Node) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(n.Socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", n.Socket(), err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// callCtx bounds one gRPC call of a test.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// hasNode reports whether dataDir holds a node (node.json), the mark of a
// completed init or join.
func hasNode(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "node.json"))
	return err == nil
}

// waitExit waits until n's daemon exits by itself.
func waitExit(t *testing.T, n *testutil.Node, timeout time.Duration) {
	t.Helper()
	select {
	case <-n.Exited():
	case <-time.After(timeout):
		t.Fatalf("%s: the daemon is still running after %s", n.Name, timeout)
	}
}
