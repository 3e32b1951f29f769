package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"shoal/internal/testutil"
	"shoal/manager/ca"
	shoalpb "shoal/proto"
	"shoal/worker"
	"shoal/worker/exec"
)

// fleet is a cluster of real managers and simulated workers.
type fleet struct {
	c       *testutil.Cluster
	rt      *noopRuntime
	workers map[string]bool // node IDs
	logs    *logCounter     // what the workers' agents and executors log
	runs    int
}

// logCounter is a slog.Handler that counts records by message and error, so
// that a sample can say how often the workers' sessions ended or a task step
// failed without printing a thousand workers' logs.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			key += ": " + a.Value.String()
			return false
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[key]++
	return nil
}

func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }

func (l *logCounter) WithGroup(string) slog.Handler { return l }

// snapshot returns a copy of the counts.
func (l *logCounter) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.counts)
}

// since describes the counts that grew since before, e.g. `"session
// ended" 12`, "none" if none did.
func (l *logCounter) since(before map[string]int) string {
	var out []string
	for msg, n := range l.snapshot() {
		if d := n - before[msg]; d > 0 {
			out = append(out, fmt.Sprintf("%q %d", msg, d))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// startFleet joins n simulated workers to c and waits until the leader lists
// them all ready. They stop when b ends.
func startFleet(b *testing.B, c *testutil.Cluster, n int) *fleet {
	b.Helper()
	dir, err := os.MkdirTemp(tmpfsDir(), "shoal-bench-fleet-")
	if err != nil {
		b.Fatalf("fleet dir: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() {
		cancel()
		wg.Wait()
		os.RemoveAll(dir)
	})
	f := &fleet{c: c, rt: newNoopRuntime(dir), workers: map[string]bool{}, logs: &logCounter{counts: map[string]int{}}}

	token := c.Token(b, "worker")
	leader := c.Leader(b)
	var managers []string
	for _, m := range c.Managers {
		managers = append(managers, m.Addr)
	}
	joinCtx, joinCancel := context.WithTimeout(ctx, fleetTimeout)
	defer joinCancel()
	j, err := newJoiner(joinCtx, token, leader.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer j.close()

	log := slog.New(f.logs)
	start := time.Now()
	var mu sync.Mutex
	var joinErr error
	sem := make(chan struct{}, joinParallel)
	var joins sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		joins.Go(func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("sim%04d", i+1)
			desc := &shoalpb.NodeDescription{Hostname: name, Os: goruntime.GOOS, Arch: goruntime.GOARCH,
				NanoCpus: 4e9, MemoryBytes: 8 << 30, Runtime: f.rt.Name()}
			var addr, id string
			var creds *ca.Credentials
			var err error
			for attempt := range joinAttempts {
				// Documentation addresses (TEST-NET-1): unique per node,
				// reachable by nobody, so nothing mistakes them for a
				// real node. A retry takes a new one, as a join that
				// failed in a leader change may have admitted the node
				// at the old one.
				addr = fmt.Sprintf("192.0.2.%d:%d", 1+i%254, 10000+i+attempt*n)
				creds, id, err = j.join(joinCtx, addr, desc)
				if status.Code(err) != codes.Unavailable {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				mu.Lock()
				joinErr = errors.Join(joinErr, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				return
			}
			ex := exec.New(exec.Config{DataDir: filepath.Join(dir, name), NodeID: id, Runtime: f.rt, Logger: log})
			agent := worker.New(worker.Config{
				Addr: addr, Description: desc, Creds: creds,
				Managers:  func() []string { return managers },
				SaveCreds: func() error { return nil },
				Executor:  ex, Logger: log,
			})
			wg.Go(func() { _ = ex.Run(ctx) })
			wg.Go(func() { _ = agent.Run(ctx) })
			mu.Lock()
			f.workers[id] = true
			mu.Unlock()
		})
	}
	joins.Wait()
	if joinErr != nil {
		b.Fatalf("join simulated workers: %v", joinErr)
	}
	joined := time.Since(start)

	cli := readyControl(b, leader)
	var ready int
	for {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cli.ListNodes(ctx, &shoalpb.ListNodesRequest{})
		cancel()
		if err == nil {
			ready = 0
			for _, v := range resp.Nodes {
				if f.workers[v.Node.GetId()] && v.Node.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_READY {
					ready++
				}
			}
			if ready == n {
				break
			}
		}
		if time.Since(start) > fleetTimeout {
			b.Fatalf("%d of %d simulated workers ready after %s (last error: %v)", ready, n, fleetTimeout, err)
		}
		time.Sleep(scalePoll)
	}
	b.Logf("%d simulated workers joined in %s, all ready after %s; workers logged: %s", n, joined.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), f.logs.since(nil))
	return f
}

// tmpfsDir is /dev/shm if it is a directory, else the default temp dir.
func tmpfsDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// joiner admits simulated workers the way `shoal join` does (node/join.go):
// the manager's root CA, checked against the token's fingerprint, then for
// each node a new key and IssueNodeCertificate with the token.
type joiner struct {
	token string
	conn  *grpc.ClientConn
}

func newJoiner(ctx context.Context, token, managerAddr string) (*joiner, error) {
	t, err := ca.ParseToken(token)
	if err != nil {
		return nil, err
	}
	boot, err := grpc.NewClient(managerAddr, grpc.WithTransportCredentials(credentials.NewTLS(ca.BootstrapTLS())))
	if err != nil {
		return nil, err
	}
	defer boot.Close()
	resp, err := shoalpb.NewNodeCAClient(boot).GetRootCA(ctx, &shoalpb.GetRootCARequest{})
	if err != nil {
		return nil, fmt.Errorf("root CA of %s: %w", managerAddr, err)
	}
	root, err := ca.ParseRootCert(resp.CertPem)
	if err != nil {
		return nil, err
	}
	if got := ca.Fingerprint(root.Raw); got != t.Fingerprint {
		return nil, fmt.Errorf("%s: CA fingerprint %s, the token expects %s", managerAddr, got, t.Fingerprint)
	}
	conn, err := grpc.NewClient(managerAddr, grpc.WithTransportCredentials(credentials.NewTLS(ca.TrustRootTLS(root, ca.RoleManager))))
	if err != nil {
		return nil, err
	}
	return &joiner{token: token, conn: conn}, nil
}

func (j *joiner) close() { j.conn.Close() }

// join admits one node and returns its credentials and node ID.
func (j *joiner) join(ctx context.Context, addr string, desc *shoalpb.NodeDescription) (*ca.Credentials, string, error) {
	keyPEM, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		return nil, "", err
	}
	resp, err := shoalpb.NewNodeCAClient(j.conn).IssueNodeCertificate(ctx, &shoalpb.IssueNodeCertificateRequest{
		Token: j.token, Csr: csr, Addr: addr, Description: desc,
	})
	if err != nil {
		return nil, "", err
	}
	creds, err := ca.NewCredentials(resp.CertPem, keyPEM, resp.RootCaPem)
	if err != nil {
		return nil, "", err
	}
	return creds, resp.NodeId, nil
}
