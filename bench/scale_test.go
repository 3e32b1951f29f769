package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
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
	// cluster (shoal init --heartbeat-period). The simulated workers share
	// this process with up to 100,000 task controllers, and while those run
	// an agent's heartbeat can wait tens of seconds for a CPU, which real
	// workers on their own hosts would not; with 1, 5 or 10 s, hundreds of
	// the simulated nodes were marked down after dispatcher.MissedHeartbeats
	// silent periods and their tasks replaced, multiplying the work. Failure
	// detection is measured at the default period by
	// BenchmarkNodeFailureDetection and BenchmarkNodeDeath.
	scaleHeartbeat = time.Minute
	// scaleWorkers is how many simulated workers the cluster has.
	scaleWorkers = 1_000
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
// The cluster runs with a heartbeat period of scaleHeartbeat (see there why).
//
// One sample per run: create a service (constraint node.role==worker, so the
// managers' own agents take no task), scale it to N, and once the workers
// have started N tasks poll a follower's ListServices every scalePoll until
// it counts N running (a follower applies a commit after the leader, so the
// figure can only be late), then remove the service and wait until its tasks
// are gone before the next run. Besides the time it reports the leader's
// resident memory once every task runs, the CPU time each process spent
// during the sample, and when the last task started on a worker; its log
// says what the workers logged (sessions that ended, and why) and the states
// of the service's tasks in the store (tasks replaced on the way show there).
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
	b.Run(fmt.Sprintf("workers=%d", scaleWorkers), func(b *testing.B) {
		f := startFleet(b, c, scaleWorkers)
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

// scaleSample is one scale-up.
type scaleSample struct {
	took        time.Duration // scale request sent → every task RUNNING on a follower
	lastStart   time.Duration // scale request sent → the last task started on a worker
	leaderRSS   float64       // MiB once every task runs
	leaderPeak  float64       // VmHWM of the leader, MiB
	leaderAnon  float64       // RssAnon of the leader (its heap and stacks), MiB
	leaderFile  float64       // RssFile: mapped file pages (the Raft log's BoltDB), MiB
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
	if s.leaderAnon, err = procStatusMiB(leader.PID(), "RssAnon"); err != nil {
		b.Fatalf("%s: %v", leader.Name, err)
	}
	if s.leaderFile, err = procStatusMiB(leader.PID(), "RssFile"); err != nil {
		b.Fatalf("%s: %v", leader.Name, err)
	}
	b.Logf("%s: scaled at %s, %d tasks running after %s (last start on a worker after %s); leader %s: %.0f MiB resident (peak %.0f; anonymous %.0f, file %.0f), CPU s: leader %.1f, followers %.1f, workers %.1f; workers logged: %s",
		name, start.Format(time.TimeOnly), tasks, s.took.Round(time.Millisecond), s.lastStart.Round(time.Millisecond), leader.Name, s.leaderRSS, s.leaderPeak, s.leaderAnon, s.leaderFile,
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
	metric("MiB-leader-anon", func(s scaleSample) float64 { return s.leaderAnon })
	metric("MiB-leader-file", func(s scaleSample) float64 { return s.leaderFile })
	metric("cpu-s-leader", func(s scaleSample) float64 { return s.cpuLeader })
	metric("cpu-s-followers", func(s scaleSample) float64 { return s.cpuFollower })
	metric("cpu-s-workers", func(s scaleSample) float64 { return s.cpuWorkers })
}
