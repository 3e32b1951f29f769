package exec

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// Which check a task gets from its service spec and its image.
func TestChecksResolveFromSpecAndImage(t *testing.T) {
	image := &shoalpb.HealthCheck{Test: []string{"CMD", "/healthcheck", "--quick"}, IntervalMs: 5000, Retries: 5}
	cases := []struct {
		name  string
		spec  *shoalpb.HealthCheck
		image *shoalpb.HealthCheck
		want  *check // nil: no check
	}{
		{"none anywhere", nil, nil, nil},
		{"the image's when the service sets none", nil, image,
			&check{argv: []string{"/healthcheck", "--quick"}, interval: 5 * time.Second, timeout: servicespec.DefaultCheckTimeout, retries: 5}},
		{"NONE disables the image's", &shoalpb.HealthCheck{Test: []string{"NONE"}}, image, nil},
		{"an image's NONE is no check", nil, &shoalpb.HealthCheck{Test: []string{"NONE"}}, nil},
		{"the service's timings on the image's probe", &shoalpb.HealthCheck{IntervalMs: 2000, StartPeriodMs: 9000}, image,
			&check{argv: []string{"/healthcheck", "--quick"}, interval: 2 * time.Second, timeout: servicespec.DefaultCheckTimeout, startPeriod: 9 * time.Second, retries: 5}},
		{"timings alone without an image check", &shoalpb.HealthCheck{IntervalMs: 2000}, nil, nil},
		{"CMD-SHELL runs in /bin/sh with defaults", &shoalpb.HealthCheck{Test: []string{"CMD-SHELL", "curl -f localhost || exit 1"}}, image,
			&check{argv: []string{"/bin/sh", "-c", "curl -f localhost || exit 1"}, interval: servicespec.DefaultCheckInterval, timeout: servicespec.DefaultCheckTimeout, retries: servicespec.DefaultCheckRetries}},
		{"HTTP", &shoalpb.HealthCheck{HttpPath: "/healthz", HttpPort: 8080, TimeoutMs: 500, Retries: 1}, nil,
			&check{httpPath: "/healthz", httpPort: 8080, interval: servicespec.DefaultCheckInterval, timeout: 500 * time.Millisecond, retries: 1}},
		{"TCP", &shoalpb.HealthCheck{TcpPort: 5432}, nil,
			&check{tcpPort: 5432, interval: servicespec.DefaultCheckInterval, timeout: servicespec.DefaultCheckTimeout, retries: servicespec.DefaultCheckRetries}},
	}
	for _, c := range cases {
		got := livenessCheck(&shoalpb.ContainerSpec{Healthcheck: c.spec}, c.image)
		if !sameCheck(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
	if got := readinessCheck(&shoalpb.ContainerSpec{Readiness: &shoalpb.HealthCheck{TcpPort: 80}}); !sameCheck(got,
		&check{tcpPort: 80, interval: servicespec.DefaultCheckInterval, timeout: servicespec.DefaultCheckTimeout, retries: servicespec.DefaultCheckRetries}) {
		t.Errorf("readiness TCP: got %+v", got)
	}
	if got := readinessCheck(&shoalpb.ContainerSpec{}); got != nil {
		t.Errorf("no readiness check: got %+v", got)
	}
}

func sameCheck(a, b *check) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.argv, b.argv) && a.httpPath == b.httpPath && a.httpPort == b.httpPort && a.tcpPort == b.tcpPort &&
		a.interval == b.interval && a.timeout == b.timeout && a.startPeriod == b.startPeriod && a.retries == b.retries
}

// The verdict before any probe: ready at once only without any check.
func TestInitialVerdict(t *testing.T) {
	ck := &check{tcpPort: 1}
	for _, c := range []struct {
		live, ready *check
		want        verdict
	}{
		{nil, nil, verdict{healthNone, true}},
		{ck, nil, verdict{healthStarting, false}},
		{nil, ck, verdict{healthNone, false}},
		{ck, ck, verdict{healthStarting, false}},
	} {
		if got := initialVerdict(c.live, c.ready); got != c.want {
			t.Errorf("live %v ready %v: got %+v, want %+v", c.live != nil, c.ready != nil, got, c.want)
		}
	}
}

// execHandle is a task whose exec probes return scripted results: the
// command's first word after the shell picks the script ("live" or "ready").
type execHandle struct {
	ip string
	mu sync.Mutex
	// results per script; an empty script fails with "no result".
	results map[string][]execResult
	argv    [][]string
	block   bool // Exec waits for its ctx to end
}

type execResult struct {
	code int
	out  string
}

func (h *execHandle) State() []byte      { return nil }
func (h *execHandle) Info() runtime.Info { return runtime.Info{PID: 1, IP: h.ip} }
func (h *execHandle) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	<-ctx.Done()
	return runtime.ExitStatus{}, ctx.Err()
}
func (h *execHandle) Stop(context.Context, string, time.Duration) error { return nil }

func (h *execHandle) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	h.mu.Lock()
	h.argv = append(h.argv, argv)
	script := argv[len(argv)-1]
	var r execResult
	if q := h.results[script]; len(q) > 0 {
		r, h.results[script] = q[0], q[1:]
	} else {
		r = execResult{1, "no result"}
	}
	block := h.block
	h.mu.Unlock()
	if block {
		<-ctx.Done()
		return -1, nil, ctx.Err()
	}
	return r.code, []byte(r.out), nil
}

var (
	pass = execResult{0, "ok\n"}
	fail = execResult{1, "  boom\n"}
)

// proberRun is a prober running on a fake clock with every report kept.
type proberRun struct {
	t       *testing.T
	clk     *fakeClock
	mu      sync.Mutex
	reports []string
	done    chan struct{}
}

func runProber(t *testing.T, live, ready *check, h runtime.Handle) *proberRun {
	t.Helper()
	r := &proberRun{t: t, clk: newFakeClock(), done: make(chan struct{})}
	p := newProber(live, ready, h, r.clk, initialVerdict(live, ready), func(v verdict, failure string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		s := strings.ToLower(strings.TrimPrefix(v.health.String(), "HEALTH_"))
		if v.ready {
			s += ",ready"
		}
		if failure != "" {
			s += ": " + failure
		}
		r.reports = append(r.reports, s)
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { defer close(r.done); p.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(testTimeout):
			t.Error("the prober did not stop with its context")
		}
	})
	return r
}

// tick waits until the prober's loops (waiters of them) wait, then moves the
// clock by d.
func (r *proberRun) tick(waiters int, d time.Duration) {
	r.t.Helper()
	r.clk.awaitWaiters(r.t, waiters)
	r.clk.Advance(d)
}

// expect waits until the prober has handled the last tick (waiters wait
// again, or it has ended when waiters is 0) and checks its reports.
func (r *proberRun) expect(waiters int, want ...string) {
	r.t.Helper()
	if waiters == 0 {
		select {
		case <-r.done:
		case <-time.After(testTimeout):
			r.t.Fatal("the prober did not end after the task failed its check")
		}
	} else {
		r.clk.awaitWaiters(r.t, waiters)
	}
	r.mu.Lock()
	got := slices.Clone(r.reports)
	r.mu.Unlock()
	if !slices.Equal(got, want) {
		r.t.Fatalf("reports %q, want %q", got, want)
	}
}

func TestProberExecRetries(t *testing.T) {
	live := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD-SHELL", "live"}, IntervalMs: 10_000}, nil)
	h := &execHandle{results: map[string][]execResult{"live": {fail, fail, pass, fail, fail, fail}}}
	r := runProber(t, live, nil, h)
	r.tick(1, 9*time.Second) // not yet an interval: no probe
	r.expect(1)
	r.tick(1, time.Second)
	r.tick(1, 10*time.Second) // two failures: still starting
	r.expect(1)
	r.tick(1, 10*time.Second)
	r.expect(1, "healthy,ready")
	r.tick(1, 10*time.Second)
	r.tick(1, 10*time.Second)
	r.expect(1, "healthy,ready")
	r.tick(1, 10*time.Second)
	r.expect(0, "healthy,ready", "unhealthy: health check failed 3 times: exit code 1: boom")
	if want := []string{"/bin/sh", "-c", "live"}; !slices.Equal(h.argv[0], want) {
		t.Fatalf("argv %q, want %q", h.argv[0], want)
	}
}

func TestProberDefaultInterval(t *testing.T) {
	live := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD", "live"}}, nil)
	r := runProber(t, live, nil, &execHandle{results: map[string][]execResult{"live": {pass}}})
	r.tick(1, servicespec.DefaultCheckInterval-time.Second)
	r.expect(1)
	r.tick(1, time.Second)
	r.expect(1, "healthy,ready")
}

// Failures within the start period do not count, unless a probe passed.
func TestProberStartPeriod(t *testing.T) {
	t.Run("failures while starting", func(t *testing.T) {
		live := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD", "live"}, IntervalMs: 10_000, Retries: 1, StartPeriodMs: 25_000}, nil)
		r := runProber(t, live, nil, &execHandle{results: map[string][]execResult{"live": {fail, fail, fail}}})
		r.tick(1, 10*time.Second)
		r.tick(1, 10*time.Second)
		r.expect(1)
		r.tick(1, 10*time.Second)
		r.expect(0, "unhealthy: health check failed 1 times: exit code 1: boom")
	})
	t.Run("a pass ends the start period", func(t *testing.T) {
		live := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD", "live"}, IntervalMs: 10_000, Retries: 1, StartPeriodMs: 60_000}, nil)
		r := runProber(t, live, nil, &execHandle{results: map[string][]execResult{"live": {pass, fail}}})
		r.tick(1, 10*time.Second)
		r.expect(1, "healthy,ready")
		r.tick(1, 10*time.Second)
		r.expect(0, "healthy,ready", "unhealthy: health check failed 1 times: exit code 1: boom")
	})
}

func TestProberTimeout(t *testing.T) {
	live := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD", "live"}, IntervalMs: 1000, TimeoutMs: 1, Retries: 1}, nil)
	r := runProber(t, live, nil, &execHandle{block: true})
	r.tick(1, time.Second)
	r.expect(0, "unhealthy: health check failed 1 times: timed out after 1ms")
}

func TestProberHTTP(t *testing.T) {
	var mu sync.Mutex
	codes := []int{http.StatusOK, http.StatusFound, http.StatusInternalServerError, http.StatusInternalServerError}
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, req.URL.Path)
		code := codes[0]
		codes = codes[1:]
		if code == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	port := portOf(t, srv.Listener.Addr())
	live := resolveCheck(&shoalpb.HealthCheck{HttpPath: "/healthz", HttpPort: port, IntervalMs: 1000, Retries: 2}, nil)
	// No IP: the task shares the host's network, so the probe goes to 127.0.0.1.
	r := runProber(t, live, nil, &execHandle{})
	r.tick(1, time.Second)
	r.expect(1, "healthy,ready")
	r.tick(1, time.Second) // 302 passes and is not followed
	r.tick(1, time.Second)
	r.expect(1, "healthy,ready")
	r.tick(1, time.Second)
	r.expect(0, "healthy,ready", "unhealthy: health check failed 2 times: GET http://127.0.0.1:"+strconv.Itoa(int(port))+"/healthz: 500 Internal Server Error")
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"/healthz", "/healthz", "/healthz", "/healthz"}; !slices.Equal(paths, want) {
		t.Fatalf("requested %q, want %q", paths, want)
	}
}

func TestProberTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	live := resolveCheck(&shoalpb.HealthCheck{TcpPort: portOf(t, ln.Addr()), IntervalMs: 1000, Retries: 1}, nil)
	r := runProber(t, live, nil, &execHandle{ip: "127.0.0.1"})
	r.tick(1, time.Second)
	r.expect(1, "healthy,ready")
	ln.Close()
	r.tick(1, time.Second)
	r.expect(0, "healthy,ready", "unhealthy: health check failed 1 times: dial tcp "+ln.Addr().String()+": connect: connection refused")
}

// A failing readiness check keeps the task running but not ready; it is
// ready again once the check passes.
func TestProberReadiness(t *testing.T) {
	ready := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD", "ready"}, IntervalMs: 1000, Retries: 2}, nil)
	t.Run("alone", func(t *testing.T) {
		h := &execHandle{results: map[string][]execResult{"ready": {fail, fail, pass, fail, fail, pass}}}
		r := runProber(t, nil, ready, h)
		r.tick(1, time.Second)
		r.tick(1, time.Second)
		r.expect(1) // not ready from the start: nothing changes
		r.tick(1, time.Second)
		r.expect(1, "none,ready")
		r.tick(1, time.Second)
		r.expect(1, "none,ready")
		r.tick(1, time.Second)
		r.expect(1, "none,ready", "none")
		r.tick(1, time.Second)
		r.expect(1, "none,ready", "none", "none,ready")
	})
	t.Run("with a liveness check", func(t *testing.T) {
		live := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD", "live"}, IntervalMs: 1000, Retries: 2}, nil)
		h := &execHandle{results: map[string][]execResult{"live": {pass, pass}, "ready": {fail, fail}}}
		r := runProber(t, live, ready, h)
		r.tick(2, time.Second)
		r.tick(2, time.Second)
		r.expect(2, "healthy") // healthy, but its readiness check fails
	})
	t.Run("default: ready once healthy", func(t *testing.T) {
		live := resolveCheck(&shoalpb.HealthCheck{Test: []string{"CMD", "live"}, IntervalMs: 1000, Retries: 1}, nil)
		r := runProber(t, live, nil, &execHandle{results: map[string][]execResult{"live": {pass, fail}}})
		r.tick(1, time.Second)
		r.expect(1, "healthy,ready")
	})
}

func portOf(t *testing.T, addr net.Addr) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}
