package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// Ports of BenchmarkRollingUpdate on the manager's host: shoal's published
// port (the routing mesh) and nginx's.
const (
	rolloutMeshPort  = 8088
	rolloutNginxPort = 8090
)

// rolloutReplicas is how many tasks each release replaces.
const rolloutReplicas = 3

// rolloutLoad is the wrk load of every rolling-update measurement without
// its duration: 2 threads, 32 keep-alive connections, wrk's default 2 s
// timeout (a slower answer is a failed request).
var rolloutLoad = []string{"-t2", "-c32", "--latency"}

// rolloutRest is how long the load runs at rest before each release.
const rolloutRest = 10 * time.Second

// rolloutMaxRelease bounds the load of one release: wrk is stopped when
// the release is over, this only keeps a hung one from loading the machine
// for ever.
const rolloutMaxRelease = 10 * time.Minute

// rolloutLeadIn is how long the release's load runs before the release
// starts, so that its connections are open when the first task changes.
const rolloutLeadIn = time.Second

// BenchmarkRollingUpdate measures what clients see while a service of 3
// replicas is released under steady HTTP load: failed requests, and the
// 99th percentile latency during the release against at rest. A 3-node
// containerd cluster (1 manager, 2 workers, each in a network namespace of
// its own) runs the demo front words-web (v1 and v2 images; GET / is a small
// page it renders itself), with an HTTP health check every second.
//
//   - shoal: service web, published on the manager through the routing
//     mesh in HTTP mode (each request balanced on its own);
//     `shoal service update --image words-web:vN --update-order start-first`
//     (then stop-first), to the version web does not run.
//   - nginx: on the manager's host, an upstream (keepalive 32, as
//     BenchmarkMesh's) over the task addresses of a service of 3 tasks; the
//     hand-made blue-green release people do today: create a second
//     service of the other version, wait until its tasks are ready,
//     rewrite the upstream to their addresses, `nginx -s reload`, remove
//     the first service.
//
// Each run loads the entry point with wrk (2 threads, 32 connections) for
// 10 s at rest, then again from 1 s before the release starts until its
// old tasks have ended (wrk stopped by SIGINT, on which it reports). The
// failed requests are wrk's non-2xx/3xx answers plus its socket errors
// (connect, read, write, timeout).
func BenchmarkRollingUpdate(b *testing.B) {
	testutil.RequireRoot(b, "containerd", "runc", "ip", "iptables", "nsenter", "nginx", "wrk")
	c := testutil.NewCluster(b, 1, 2, testutil.WithHosts(), testutil.WithDaemonArgs("--runtime", "containerd"))
	m := c.Managers[0]
	for _, version := range []string{"v1", "v2"} {
		if _, err := m.Shoal(b, "image", "load", "-i", testutil.DemoImage(b, "words-web", version)); err != nil {
			b.Fatalf("image load words-web:%s: %v", version, err)
		}
	}
	cli := readyControl(b, m)

	createWeb(b, m, "web", "v1", "--publish", fmt.Sprintf("published=%d,target=80,mesh=http", rolloutMeshPort))
	createWeb(b, m, "blue", "v1")
	web := awaitRelease(b, cli, "web", "v1")
	blue := awaitRelease(b, cli, "blue", "v1")
	meshURL := fmt.Sprintf("http://%s:%d/", m.IP, rolloutMeshPort)
	b.Logf("web runs on %s", taskAddrs(b, web))

	dir := b.TempDir()
	nginx := nginxArgs(b, dir, "rollout", rolloutNginxConf(b, blue))
	startProcess(b, m.HostCommand("nginx", nginx...), syscall.SIGQUIT)
	nginxURL := fmt.Sprintf("http://%s:%d/", m.IP, rolloutNginxPort)
	waitURL(b, meshURL)
	waitURL(b, nginxURL)

	for _, order := range []string{"start-first", "stop-first"} {
		b.Run("shoal/order="+order, func(b *testing.B) {
			for b.Loop() {
				to, _ := otherVersion(b, cli, "web")
				measureRelease(b, meshURL, func() {
					if out, err := m.Shoal(b, "service", "update", "--image", "words-web:"+to, "--update-order", order, "web"); err != nil {
						b.Fatalf("service update web to %s (%s): %v\n%s", to, order, err, out)
					}
					awaitRelease(b, cli, "web", to)
				})
				awaitRolloutDone(b, cli, "web")
			}
		})
	}

	// The hand-made release swaps blue and green, one each time.
	live, next := "blue", "green"
	b.Run("nginx/blue-green", func(b *testing.B) {
		for b.Loop() {
			to, liveID := otherVersion(b, cli, live)
			measureRelease(b, nginxURL, func() {
				createWeb(b, m, next, to)
				tasks := awaitRelease(b, cli, next, to)
				nginxReload(b, nginx, rolloutNginxConf(b, tasks))
				if out, err := m.Shoal(b, "service", "rm", live); err != nil {
					b.Fatalf("service rm %s: %v\n%s", live, err, out)
				}
				awaitGone(b, cli, liveID)
			})
			live, next = next, live
		}
	})
}

// createWeb creates a service of rolloutReplicas words-web tasks at
// version, with an HTTP health check every second, and extra flags.
func createWeb(b *testing.B, m *testutil.Node, name, version string, extra ...string) {
	b.Helper()
	args := []string{"service", "create", "--name", name, "--replicas", fmt.Sprint(rolloutReplicas),
		"--env", "APP_NAME=app:8080", "--health-http", "/healthz:80", "--health-interval", "1s"}
	args = append(append(args, extra...), "words-web:"+version)
	if out, err := m.Shoal(b, args...); err != nil {
		b.Fatalf("service create %s: %v\n%s", name, err, out)
	}
}

// measureRelease loads url at rest, then during release (which returns once
// the release is over), and reports the figures.
func measureRelease(b *testing.B, url string, release func()) {
	b.Helper()
	rest := wrk(b, slices.Concat(rolloutLoad, []string{wrkDuration(rolloutRest)}), url)
	cmd := exec.Command("wrk", slices.Concat(rolloutLoad, []string{wrkDuration(rolloutMaxRelease), url})...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start wrk: %v", err)
	}
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	time.Sleep(rolloutLeadIn)
	start := time.Now()
	release()
	took := time.Since(start)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		b.Fatalf("stop wrk: %v", err)
	}
	err := cmd.Wait()
	waited = true
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out.String())
	}
	during := parseWrk(b, out.String())
	b.Logf("at rest: %d requests, %d failed, p99 %.2f ms", rest.requests, rest.failed(), rest.p99ms)
	sockets := wrkSockErr.FindString(during.out)
	if sockets == "" {
		sockets = "no socket errors"
	}
	b.Logf("release (%.1f s): %d requests, %d failed (%d not 2xx/3xx; %s), p99 %.2f ms",
		took.Seconds(), during.requests, during.failed(), during.non2xx, sockets, during.p99ms)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(during.failed()), "failed")
	b.ReportMetric(float64(rest.failed()), "failed-at-rest")
	b.ReportMetric(rest.p99ms, "p99-rest-ms")
	b.ReportMetric(during.p99ms, "p99-release-ms")
	b.ReportMetric(during.p99ms/rest.p99ms, "p99-ratio")
	b.ReportMetric(took.Seconds(), "release-s")
}

// wrkDuration is wrk's -d option for d, in whole seconds.
func wrkDuration(d time.Duration) string { return fmt.Sprintf("-d%ds", int(d.Seconds())) }

// rolloutNginxConf is nginx on rolloutNginxPort proxying to tasks' port 80.
func rolloutNginxConf(b *testing.B, tasks []*shoalpb.Task) string {
	b.Helper()
	servers := make([]string, len(tasks))
	for i, t := range tasks {
		servers[i] = taskAddr(b, t).String() + ":80"
	}
	return proxyConf(fmt.Sprintf("0.0.0.0:%d", rolloutNginxPort), servers)
}

// nginxReload rewrites the nginx.conf that args name with conf and runs
// `nginx -s reload`, as an operator does.
func nginxReload(b *testing.B, args []string, conf string) {
	b.Helper()
	file := args[1] // after "-c"
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("nginx", append(args, "-s", "reload")...).CombinedOutput(); err != nil {
		b.Fatalf("nginx -s reload: %v\n%s", err, out)
	}
}

// otherVersion is the version of words-web the service does not run, and
// the service's ID.
func otherVersion(b *testing.B, cli shoalpb.ControlServiceClient, service string) (version, id string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := cli.GetService(ctx, &shoalpb.GetServiceRequest{Service: service})
	if err != nil {
		b.Fatalf("get service %s: %v", service, err)
	}
	if strings.HasSuffix(svc.GetSpec().GetTask().GetContainer().GetImage(), ":v1") {
		return "v2", svc.GetId()
	}
	return "v1", svc.GetId()
}

// awaitRelease waits until the service's tasks that have not ended are
// rolloutReplicas tasks of words-web at version, all running and ready,
// and returns them: the old ones have been drained and stopped.
func awaitRelease(b *testing.B, cli shoalpb.ControlServiceClient, service, version string) []*shoalpb.Task {
	b.Helper()
	var live []*shoalpb.Task
	pollUntil(b, time.Now(), service+" released at "+version, func(ctx context.Context) (bool, error) {
		resp, err := cli.ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": service}})
		if err != nil {
			return false, err
		}
		live = live[:0]
		for _, t := range resp.GetTasks() {
			st := t.GetStatus()
			if st.GetState() >= shoalpb.TaskState_TASK_STATE_COMPLETE {
				continue
			}
			if st.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING || !st.GetReady() ||
				!strings.HasSuffix(t.GetSpec().GetContainer().GetImage(), ":"+version) || t.GetAddress() == "" {
				return false, fmt.Errorf("task %s: %s, ready %v, image %s", t.GetId(), st.GetState(), st.GetReady(), t.GetSpec().GetContainer().GetImage())
			}
			live = append(live, t)
		}
		return len(live) == rolloutReplicas, fmt.Errorf("%d tasks live, want %d", len(live), rolloutReplicas)
	})
	return live
}

// awaitRolloutDone waits until the service's rollout is over (COMPLETED,
// after its monitor period), so that the next one starts afresh.
func awaitRolloutDone(b *testing.B, cli shoalpb.ControlServiceClient, service string) {
	b.Helper()
	pollUntil(b, time.Now(), service+"'s rollout completed", func(ctx context.Context) (bool, error) {
		svc, err := cli.GetService(ctx, &shoalpb.GetServiceRequest{Service: service})
		if err != nil {
			return false, err
		}
		st := svc.GetUpdateStatus()
		return st.GetState() == shoalpb.UpdateState_UPDATE_STATE_COMPLETED, fmt.Errorf("rollout %s (%s)", st.GetState(), st.GetMessage())
	})
}

// awaitGone waits until no task of the removed service serviceID has not
// ended.
func awaitGone(b *testing.B, cli shoalpb.ControlServiceClient, serviceID string) {
	b.Helper()
	pollUntil(b, time.Now(), "the removed service's tasks gone", func(ctx context.Context) (bool, error) {
		// Listed unfiltered: a filter names a service that exists.
		resp, err := cli.ListTasks(ctx, &shoalpb.ListTasksRequest{})
		if err != nil {
			return false, err
		}
		for _, t := range resp.GetTasks() {
			if t.GetServiceId() == serviceID && t.GetStatus().GetState() < shoalpb.TaskState_TASK_STATE_COMPLETE {
				return false, fmt.Errorf("task %s is %s", t.GetId(), t.GetStatus().GetState())
			}
		}
		return true, nil
	})
}

// taskAddrs lists the tasks' addresses for the log.
func taskAddrs(b *testing.B, tasks []*shoalpb.Task) []string {
	b.Helper()
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = taskAddr(b, t).String()
	}
	return out
}
