package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// Bounds of the scale benchmark's waits: a product that takes longer fails
// the benchmark instead of hanging it.
const (
	fleetTimeout    = 5 * time.Minute  // joining the simulated workers until all are ready
	convergeTimeout = 10 * time.Minute // one scale-up until every task runs
	drainTimeout    = 10 * time.Minute // removing the service until its tasks are gone
	// scalePoll is how often the scale benchmark looks for the end of a
	// sample (and the fleet for ready workers).
	scalePoll = 100 * time.Millisecond
	// scaleHeartbeat is the heartbeat period of the scale benchmark's
	// cluster: Docker Swarm's default, as a 1,000-node cluster would use
	// (a node is marked down after dispatcher.MissedHeartbeats periods
	// without one). shoal's default of 1 s suits small clusters.
	scaleHeartbeat = 60 * time.Second // TEMP experiment
	// joinParallel is how many simulated workers join at once.
	joinParallel = 16
	// joinAttempts bounds the tries of one join; a join fails with
	// Unavailable while the managers elect a leader.
	joinAttempts = 5
)

// BenchmarkControlPlaneScale measures the control plane at scale: 3 managers
// (real shoal processes) and 1,000 simulated workers, then `service create
// --replicas 0` and `service scale` to N tasks, timed until every task is
// RUNNING in the store.
//
// The workers run in this test process, but each is a real node: it joined
// with the worker token through NodeCA.IssueNodeCertificate (its own key and
// certificate), and runs the real agent (worker.Agent: a mutual-TLS gRPC
// session with the leader, heartbeats, assignments, batched status reports)
// and the real executor (worker/exec: a controller per task, a record per
// task on disk). Only the runtime is a no-op (noopRuntime): a task runs as
// soon as it starts. The agents are given the managers' addresses, so they
// run no gossip. Their data dirs are on tmpfs when /dev/shm exists: on real
// hosts each worker writes its own disk, here a thousand would share one.
//
// One sample per run: create a service (constraint node.role==worker, so the
// managers' own agents take no task), scale it to N, and once the workers
// have started N tasks poll a follower's ListServices every scalePoll until
// it counts N running (a follower applies a commit after the leader, so the
// figure can only be late), then remove the
// service and wait until its tasks are gone before the next run. Besides the
// time it reports the leader's resident memory once every task runs, the CPU
// time each process spent during the sample, and when the last task started
// on a worker.
//
// With SHOAL_BENCH_PROFILE=DIR the managers serve their profiles
// (--debug-addr) and each sample writes every manager's CPU profile, in 5 s
// pieces (merge them with `go tool pprof -proto`), and its heap profile once
// every task runs, into DIR.
func BenchmarkControlPlaneScale(b *testing.B) {
	opts := []testutil.Option{testutil.WithInitArgs("--heartbeat-period", scaleHeartbeat.String())}
	if profileDir() != "" {
		opts = append(opts, testutil.WithDaemonArgs("--debug-addr", "127.0.0.1:0"))
	}
	c := testutil.NewCluster(b, 3, 0, opts...)
	for _, workers := range []int{1_000} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			f := startFleet(b, c, workers)
			for _, tasks := range []int{10_000, 100_000} {
				b.Run(fmt.Sprintf("tasks=%d", tasks), func(b *testing.B) {
					var samples []scaleSample
					for b.Loop() {
						samples = append(samples, f.scale(b, tasks))
					}
					b.ReportMetric(0, "ns/op")
					reportScale(b, tasks, samples)
				})
			}
		})
	}
}

// fleet is a cluster of real managers and simulated workers.
type fleet struct {
	c       *testutil.Cluster
	rt      *noopRuntime
	workers map[string]bool // node IDs
	logs    *logCounter     // what the workers' agents and executors log
	runs    int
}

// logCounter is a slog.Handler that counts records by message (and error), so that a
// sample can say how often the workers' sessions ended or a task step failed
// without printing a thousand workers' logs.
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

// scaleSample is one scale-up.
type scaleSample struct {
	took        time.Duration // scale request sent → every task RUNNING on a follower
	lastStart   time.Duration // scale request sent → the last task started on a worker
	leaderRSS   float64       // MiB once every task runs
	leaderPeak  float64       // VmHWM of the leader, MiB
	cpuLeader   float64       // CPU seconds the leader spent during took
	cpuFollower float64       // both followers together
	cpuWorkers  float64       // this process: the simulated workers (and the polling)
}

// scale creates a service with no task, scales it to tasks and times until
// every task runs; then it removes the service and waits until its tasks are
// gone.
func (f *fleet) scale(b *testing.B, tasks int) scaleSample {
	b.Helper()
	f.runs++
	leader := f.c.Leader(b)
	var followers []*testutil.Node
	for _, m := range f.c.Managers {
		if m != leader {
			followers = append(followers, m)
		}
	}
	cli, watch := readyControl(b, leader), readyControl(b, followers[0])
	name := fmt.Sprintf("scale-%d-%d", tasks, f.runs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc, err := cli.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: &shoalpb.ServiceSpec{
		Name: name,
		Mode: shoalpb.ServiceMode_SERVICE_MODE_REPLICATED,
		Task: &shoalpb.TaskSpec{
			Container: &shoalpb.ContainerSpec{Image: "noop", Command: []string{"noop"}},
			Placement: &shoalpb.Placement{Constraints: []string{"node.role==worker"}},
		},
	}})
	if err != nil {
		b.Fatalf("service create %s --replicas 0: %v", name, err)
	}
	_, startedBefore, _ := f.rt.counts()

	logsBefore := f.logs.snapshot()
	stopProfile := profileManagers(b, leader, f.c.Managers, name)
	cpu0 := cpuTimes(b, leader, followers)
	start := time.Now()
	spec := svc.Spec
	spec.Replicas = uint64(tasks)
	if _, err := cli.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: svc.Id, Version: svc.Meta.GetVersion(), Spec: spec}); err != nil {
		b.Fatalf("service scale %s=%d: %v", name, tasks, err)
	}
	var running uint64
	var last error
	for {
		// Counting reads every task of the service on the follower, so it
		// waits until the workers have started them all: before that the
		// store cannot list them all running.
		if _, started, _ := f.rt.counts(); started-startedBefore >= tasks {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			resp, err := watch.ListServices(ctx, &shoalpb.ListServicesRequest{Filters: map[string]string{"id": svc.Id}})
			cancel()
			if err == nil && len(resp.Services) == 1 {
				running = resp.Services[0].Running
				if running == uint64(tasks) {
					break
				}
			}
			last = err
		}
		if time.Since(start) > convergeTimeout {
			_, started, _ := f.rt.counts()
			b.Fatalf("%s: %d of %d tasks started on workers, %d listed running, after %s (last error: %v)",
				name, started-startedBefore, tasks, running, convergeTimeout, last)
		}
		time.Sleep(scalePoll)
	}
	s := scaleSample{took: time.Since(start)}
	cpu1 := cpuTimes(b, leader, followers)
	stopProfile()
	s.cpuLeader, s.cpuFollower, s.cpuWorkers = cpu1.leader-cpu0.leader, cpu1.followers-cpu0.followers, cpu1.self-cpu0.self
	_, started, lastStart := f.rt.counts()
	if started-startedBefore >= tasks {
		s.lastStart = lastStart.Sub(start)
	}
	if s.leaderRSS, err = procStatusMiB(leader.PID(), "VmRSS"); err != nil {
		b.Fatalf("%s: %v", leader.Name, err)
	}
	if s.leaderPeak, err = procStatusMiB(leader.PID(), "VmHWM"); err != nil {
		b.Fatalf("%s: %v", leader.Name, err)
	}
	b.Logf("%s: scaled at %s, %d tasks running after %s (last start on a worker after %s); leader %s: %.0f MiB resident (peak %.0f), CPU s: leader %.1f, followers %.1f, workers %.1f; workers logged: %s",
		name, start.Format(time.TimeOnly), tasks, s.took.Round(time.Millisecond), s.lastStart.Round(time.Millisecond), leader.Name, s.leaderRSS, s.leaderPeak,
		s.cpuLeader, s.cpuFollower, s.cpuWorkers, f.logs.since(logsBefore))

	b.Logf("%s: the store holds %s", name, taskStates(b, cli, svc.Id))
	f.drain(b, cli, name, svc.Id)
	return s
}

// drain removes the service and waits until the workers run none of its
// tasks and the store holds none.
func (f *fleet) drain(b *testing.B, cli shoalpb.ControlServiceClient, name, id string) {
	b.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, err := cli.RemoveService(ctx, &shoalpb.RemoveServiceRequest{Service: id})
	cancel()
	if err != nil {
		b.Fatalf("service rm %s: %v", name, err)
	}
	left := -1 // unknown until the workers have stopped every task
	for {
		running, _, _ := f.rt.counts()
		if running == 0 {
			// A removed service's tasks can only be listed all together;
			// after its tasks have stopped, few are left to list.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			resp, lerr := cli.ListTasks(ctx, &shoalpb.ListTasksRequest{}, grpc.MaxCallRecvMsgSize(1<<30))
			cancel()
			if err = lerr; err == nil {
				left = 0
				for _, t := range resp.Tasks {
					if t.GetServiceId() == id {
						left++
					}
				}
				if left == 0 {
					break
				}
			}
		}
		if time.Since(start) > drainTimeout {
			b.Fatalf("%s removed %s ago: %d tasks still running on workers, %d left in the store (-1: not listed yet; last error: %v)", name, drainTimeout, running, left, err)
		}
		time.Sleep(time.Second)
	}
	b.Logf("%s removed; its tasks gone after %s", name, time.Since(start).Round(time.Millisecond))
}

// taskStates counts the tasks of a service by desired and observed state,
// e.g. "100000 tasks: 99990 running, 10 shutdown/orphaned": a scale-up that
// had to replace tasks (their node was marked down) leaves more than it asked.
func taskStates(b *testing.B, cli shoalpb.ControlServiceClient, id string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": id}}, grpc.MaxCallRecvMsgSize(1<<30))
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	counts := map[string]int{}
	for _, t := range resp.Tasks {
		desired := strings.ToLower(strings.TrimPrefix(t.GetDesiredState().String(), "TASK_STATE_"))
		observed := strings.ToLower(strings.TrimPrefix(t.GetStatus().GetState().String(), "TASK_STATE_"))
		counts[desired+"/"+observed]++
	}
	var out []string
	for k, n := range counts {
		out = append(out, fmt.Sprintf("%d %s", n, k))
	}
	slices.Sort(out)
	return fmt.Sprintf("%d tasks (desired/observed: %s)", len(resp.Tasks), strings.Join(out, ", "))
}

// reportScale reports the medians of the samples.
func reportScale(b *testing.B, tasks int, samples []scaleSample) {
	metric := func(unit string, fn func(s scaleSample) float64) {
		vals := make([]float64, len(samples))
		for i, s := range samples {
			vals[i] = fn(s)
		}
		b.ReportMetric(median(vals), unit)
	}
	metric("s/converge", func(s scaleSample) float64 { return s.took.Seconds() })
	metric("tasks/s", func(s scaleSample) float64 { return float64(tasks) / s.took.Seconds() })
	metric("s-last-start", func(s scaleSample) float64 { return s.lastStart.Seconds() })
	metric("MiB-leader", func(s scaleSample) float64 { return s.leaderRSS })
	metric("MiB-leader-peak", func(s scaleSample) float64 { return s.leaderPeak })
	metric("cpu-s-leader", func(s scaleSample) float64 { return s.cpuLeader })
	metric("cpu-s-followers", func(s scaleSample) float64 { return s.cpuFollower })
	metric("cpu-s-workers", func(s scaleSample) float64 { return s.cpuWorkers })
}

// cpuSample is the CPU time used so far by the leader, the followers
// together and this process, in seconds.
type cpuSample struct{ leader, followers, self float64 }

func cpuTimes(b *testing.B, leader *testutil.Node, followers []*testutil.Node) cpuSample {
	b.Helper()
	var s cpuSample
	var err error
	if s.leader, err = processCPU(leader.PID()); err != nil {
		b.Fatalf("%s: %v", leader.Name, err)
	}
	for _, f := range followers {
		v, err := processCPU(f.PID())
		if err != nil {
			b.Fatalf("%s: %v", f.Name, err)
		}
		s.followers += v
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	return s
}

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat; 100 on
// every Linux architecture Go supports.
const clockTick = 100

// processCPU returns the user plus system CPU seconds process pid has used,
// from /proc/PID/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start at field 3.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(fields[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) / clockTick, nil
}

// profileDir is the directory named by SHOAL_BENCH_PROFILE, "" if unset.
func profileDir() string { return os.Getenv("SHOAL_BENCH_PROFILE") }

// profileManagers writes the CPU profile of every manager, in 5 s pieces,
// into profileDir until the returned function is called; that function then
// writes their heap profiles. The files are named after the sample, the
// manager and its role. Without profileDir both do nothing.
func profileManagers(b *testing.B, leader *testutil.Node, managers []*testutil.Node, name string) (stop func()) {
	b.Helper()
	dir := profileDir()
	if dir == "" {
		return func() {}
	}
	serving := regexp.MustCompile(`msg="serving profiles" addr=(\S+)`)
	fetch := func(ctx context.Context, url, file string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			b.Errorf("profile %s: %v", url, err)
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				b.Errorf("profile %s: %v", url, err)
			}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && ctx.Err() == nil {
			err = os.WriteFile(filepath.Join(dir, file), data, 0o644)
		}
		if err != nil && ctx.Err() == nil {
			b.Errorf("profile %s: %v", url, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var heaps []func()
	for _, m := range managers {
		found := serving.FindAllStringSubmatch(m.Log(b), -1)
		if found == nil {
			b.Fatalf("%s: SHOAL_BENCH_PROFILE is set but its log does not say where it serves profiles", m.Name)
		}
		base := found[len(found)-1][1] // the current run of the daemon
		prefix := name + "-" + m.Name + "-follower"
		if m == leader {
			prefix = name + "-" + m.Name + "-leader"
		}
		wg.Go(func() {
			for i := 1; ctx.Err() == nil; i++ {
				fetch(ctx, base+"profile?seconds=5", fmt.Sprintf("%s-cpu-%03d.pb.gz", prefix, i))
			}
		})
		heaps = append(heaps, func() { fetch(context.Background(), base+"heap", prefix+"-heap.pb.gz") })
	}
	return func() {
		cancel() // the pieces in progress are lost
		wg.Wait()
		for _, heap := range heaps {
			heap()
		}
	}
}
