package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// Liveness and readiness checks on the process runtime, whose tasks share
// the host's network: HTTP and TCP checks can probe servers of this test.
func TestServiceHealthChecks(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1)
	m := c.Managers[0]
	api := controlAPI(t, m)
	t.Run("failing health check replaces the task", func(t *testing.T) {
		t.Parallel()
		testUnhealthyReplaced(t, m, api)
	})
	t.Run("failing readiness keeps the task running", func(t *testing.T) {
		t.Parallel()
		testNotReady(t, m, api)
	})
	t.Run("passing checks", func(t *testing.T) {
		t.Parallel()
		testHealthyAndReady(t, m, api)
	})
	t.Run("bad checks are refused", func(t *testing.T) {
		t.Parallel()
		testBadChecksRefused(t, m, api)
	})
}

// A task whose liveness check fails `retries` times is stopped, reported
// FAILED with the check's output, and replaced in its slot by the restart
// policy.
func testUnhealthyReplaced(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient) {
	mustShoal(t, m, append([]string{"service", "create", "--name", "sick", "--detach", "--restart-delay", "0s",
		"--health-cmd", "echo sick; exit 1", "--health-interval", "100ms", "--health-retries", "2"}, sleeper...)...)
	const wantErr = "health check failed 2 times: exit code 1: sick"
	var sick *shoalpb.Task
	waitTasks(t, api, "sick", moveTimeout, func(tasks []*shoalpb.Task) error {
		sick = nil
		for _, task := range tasks {
			if st := task.GetStatus(); st.GetState() == shoalpb.TaskState_TASK_STATE_FAILED && st.GetErr() == wantErr {
				sick = task
			}
		}
		if sick == nil {
			return fmt.Errorf("no task FAILED with %q: %s", wantErr, summary(tasks))
		}
		for _, task := range tasks {
			if task.Slot == sick.Slot && task.Id != sick.Id && task.GetMeta().GetCreatedAt().AsTime().After(sick.GetMeta().GetCreatedAt().AsTime()) {
				return nil
			}
		}
		return fmt.Errorf("task %s failed its check, but no newer task holds slot %d: %s", sick.Id, sick.Slot, summary(tasks))
	})
	if sick.GetStatus().GetHealth() != shoalpb.HealthState_HEALTH_UNHEALTHY {
		t.Fatalf("failed task %s: health %s, want UNHEALTHY", sick.Id, sick.GetStatus().GetHealth())
	}
	waitProcessGone(t, sick.GetStatus().GetPid(), moveTimeout)
	out := mustShoal(t, m, "service", "ps", "sick")
	if !strings.Contains(out, wantErr) {
		t.Fatalf("service ps sick:\n%s\nwant a task failed with %q", out, wantErr)
	}
}

// A task whose readiness check fails keeps RUNNING, not ready, and is not
// replaced; once the check passes it is ready, which `service ps` shows.
func testNotReady(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient) {
	dir := t.TempDir()
	probes, ready := filepath.Join(dir, "probes"), filepath.Join(dir, "ready")
	check := fmt.Sprintf("echo probe >> %s; test -f %s", probes, ready)
	mustShoal(t, m, append([]string{"service", "create", "--name", "slow", "--detach",
		"--readiness-cmd", check, "--readiness-interval", "100ms", "--readiness-retries", "1"}, sleeper...)...)
	// Five probes have failed: the task must still run, alone and not ready.
	testutil.Eventually(t, convergeTimeout, func() error {
		b, err := os.ReadFile(probes)
		if n := strings.Count(string(b), "probe"); err != nil || n < 5 {
			return fmt.Errorf("the readiness check ran %d times (%v), want 5", n, err)
		}
		return nil
	})
	tasks := waitTasks(t, api, "slow", convergeTimeout, converged(1))
	if len(tasks) != 1 {
		t.Fatalf("a task failing its readiness check was replaced: %s", summary(tasks))
	}
	if st := tasks[0].GetStatus(); st.GetReady() || st.GetHealth() != shoalpb.HealthState_HEALTH_NONE {
		t.Fatalf("task %s: ready %v health %s, want not ready and no health check", tasks[0].Id, st.GetReady(), st.GetHealth())
	}
	if out := mustShoal(t, m, "service", "ps", "slow"); !strings.Contains(out, "(not ready)") {
		t.Fatalf("service ps slow:\n%s\nwant the task shown (not ready)", out)
	}

	first := tasks[0].Id
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitTasks(t, api, "slow", convergeTimeout, func(tasks []*shoalpb.Task) error {
		if len(tasks) != 1 || tasks[0].Id != first || !tasks[0].GetStatus().GetReady() {
			return fmt.Errorf("want the same one task RUNNING and ready: %s", summary(tasks))
		}
		return converged(1)(tasks)
	})
	testutil.Eventually(t, convergeTimeout, func() error {
		if out := mustShoal(t, m, "service", "ps", "slow"); !strings.Contains(out, "running") || !strings.Contains(out, "(ready)") {
			return fmt.Errorf("service ps slow:\n%s\nwant the task shown running (ready)", out)
		}
		return nil
	})
}

// HTTP liveness and TCP readiness checks against servers of this test: the
// task turns healthy and ready, each change is stored and sent as a task
// update event, and `service ps` and `service inspect` show them.
func testHealthyAndReady(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/ok" {
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := api.Events(ctx, &shoalpb.EventsRequest{Filters: map[string]string{"type": "task", "service": "fine"}})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	events := collect(stream.Recv)

	mustShoal(t, m, append([]string{"service", "create", "--name", "fine",
		"--health-http", "/ok:" + port, "--health-interval", "100ms",
		"--readiness-tcp", port, "--readiness-interval", "100ms"}, sleeper...)...)
	tasks := waitTasks(t, api, "fine", convergeTimeout, func(tasks []*shoalpb.Task) error {
		if err := converged(1)(tasks); err != nil {
			return err
		}
		if st := current(tasks)[0].GetStatus(); st.GetHealth() != shoalpb.HealthState_HEALTH_HEALTHY || !st.GetReady() {
			return fmt.Errorf("task health %s ready %v, want HEALTHY and ready", st.GetHealth(), st.GetReady())
		}
		return nil
	})
	task := current(tasks)[0]
	testutil.Eventually(t, convergeTimeout, func() error {
		list, err := events.snapshot()
		if err != nil {
			return err
		}
		for _, e := range list {
			a := e.Attributes
			if e.Id == task.Id && e.Action == "update" && a["state"] == "running" && a["health"] == "healthy" && a["ready"] == "true" {
				return nil
			}
		}
		return fmt.Errorf("no task update event says %s runs healthy and ready: %v", task.Id, list)
	})
	if out := mustShoal(t, m, "service", "ps", "fine"); !strings.Contains(out, "(healthy, ready)") {
		t.Fatalf("service ps fine:\n%s\nwant the task shown (healthy, ready)", out)
	}
	out := mustShoal(t, m, "service", "inspect", "fine")
	for _, want := range []string{"healthcheck", `"/ok"`, "readiness", port} {
		if !strings.Contains(out, want) {
			t.Fatalf("service inspect fine:\n%s\nwant the checks shown (%q)", out, want)
		}
	}
}

// Bad checks are refused naming the flag, from the CLI and the API alike,
// and create no service.
func testBadChecksRefused(t *testing.T, m *testutil.Node, api shoalpb.ControlServiceClient) {
	cases := []struct {
		args  []string
		parts []string
	}{
		{[]string{"--no-healthcheck", "--health-cmd", "true"}, []string{"--no-healthcheck", "--health-cmd"}},
		{[]string{"--health-http", "healthz:80"}, []string{"--health-http", `must start with "/"`}},
		{[]string{"--readiness-tcp", "70000"}, []string{"--readiness-tcp", "1 to 65535"}},
		{[]string{"--health-cmd", "true", "--health-tcp", "80"}, []string{"--health-cmd, --health-tcp", "one kind"}},
		{[]string{"--health-cmd", "true", "--health-interval", "-1s"}, []string{"--health-interval", "must not be negative"}},
		{[]string{"--readiness-interval", "1s"}, []string{"--readiness", "needs a probe"}},
	}
	for _, c := range cases {
		_, err := m.Shoal(t, append(append([]string{"service", "create", "--name", "refused", "--detach"}, c.args...), sleeper...)...)
		wantError(t, fmt.Sprintf("service create %q", c.args), err, c.parts...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	spec := &shoalpb.ServiceSpec{Name: "refused", Replicas: 1, Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{
		Image: "busybox", Command: []string{"sleep", "1000"},
		Healthcheck: &shoalpb.HealthCheck{Test: []string{"CMD-SHELL", "true"}, HttpPath: "/", HttpPort: 80},
	}}}
	_, err := api.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: spec})
	wantError(t, "CreateService with two probes", err, "--health", "exactly one of --health-cmd, --health-http and --health-tcp")
	if _, err := api.GetService(ctx, &shoalpb.GetServiceRequest{Service: "refused"}); err == nil {
		t.Fatal("a refused service was created")
	}
}
