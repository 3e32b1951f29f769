package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// maxProbeDetail bounds the probe output kept in a status message.
const maxProbeDetail = 512

// check is a resolved probe: exactly one of argv, httpPort and tcpPort is set.
type check struct {
	argv        []string // run inside the task (CMD, CMD-SHELL)
	httpPath    string
	httpPort    uint32
	tcpPort     uint32
	interval    time.Duration
	timeout     time.Duration
	startPeriod time.Duration
	retries     int
}

// hasProbe reports whether hc names a kind of probe (a command, an HTTP GET
// or a TCP connect) rather than only timings or NONE.
func hasProbe(hc *shoalpb.HealthCheck) bool {
	if hc == nil {
		return false
	}
	if t := hc.GetTest(); len(t) > 0 && (t[0] == "CMD" || t[0] == "CMD-SHELL") {
		return true
	}
	return hc.GetHttpPort() != 0 || hc.GetTcpPort() != 0
}

// disables reports whether hc is ["NONE"]: no check, not even the image's.
func disables(hc *shoalpb.HealthCheck) bool {
	t := hc.GetTest()
	return len(t) > 0 && t[0] == "NONE"
}

// livenessCheck is the task's liveness check: the service's; or, when the
// service names no probe and does not disable the check, the image's with
// the service's non-zero timings on top (as Docker merges them). nil: none.
func livenessCheck(spec *shoalpb.ContainerSpec, image *shoalpb.HealthCheck) *check {
	svc := spec.GetHealthcheck()
	switch {
	case disables(svc):
		return nil
	case hasProbe(svc):
		return resolveCheck(svc, nil)
	case hasProbe(image) && !disables(image):
		return resolveCheck(image, svc)
	}
	return nil
}

// readinessCheck is the task's readiness check; nil: none.
func readinessCheck(spec *shoalpb.ContainerSpec) *check {
	if r := spec.GetReadiness(); hasProbe(r) {
		return resolveCheck(r, nil)
	}
	return nil
}

// resolveCheck turns hc into a check with defaults filled in; the non-zero
// timings of override win over hc's.
func resolveCheck(hc, override *shoalpb.HealthCheck) *check {
	ck := &check{httpPath: hc.GetHttpPath(), httpPort: hc.GetHttpPort(), tcpPort: hc.GetTcpPort()}
	if t := hc.GetTest(); len(t) > 0 {
		switch t[0] {
		case "CMD":
			ck.argv = t[1:]
		case "CMD-SHELL":
			ck.argv = []string{"/bin/sh", "-c", strings.Join(t[1:], " ")}
		}
	}
	if ck.argv != nil || ck.tcpPort != 0 {
		ck.httpPort = 0
	}
	if ck.httpPort != 0 && ck.httpPath == "" {
		ck.httpPath = "/"
	}
	pick := func(a, b int64) int64 {
		if b > 0 {
			return b
		}
		return a
	}
	ms := func(v int64, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return time.Duration(v) * time.Millisecond
	}
	ck.interval = ms(pick(hc.GetIntervalMs(), override.GetIntervalMs()), servicespec.DefaultCheckInterval)
	ck.timeout = ms(pick(hc.GetTimeoutMs(), override.GetTimeoutMs()), servicespec.DefaultCheckTimeout)
	ck.startPeriod = ms(pick(hc.GetStartPeriodMs(), override.GetStartPeriodMs()), 0)
	ck.retries = int(pick(int64(hc.GetRetries()), int64(override.GetRetries())))
	if ck.retries <= 0 {
		ck.retries = servicespec.DefaultCheckRetries
	}
	return ck
}

// probe runs the check once against the task and returns whether it passed
// and what to tell the user when it did not.
func probe(ctx context.Context, ck *check, h runtime.Handle) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, ck.timeout)
	defer cancel()
	ok, detail := probeOnce(ctx, ck, h)
	if !ok && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		detail = fmt.Sprintf("timed out after %s", ck.timeout)
	}
	return ok, trimDetail(detail)
}

func probeOnce(ctx context.Context, ck *check, h runtime.Handle) (bool, string) {
	host := h.Info().IP
	if host == "" {
		// The task shares the host's network (process runtime).
		host = "127.0.0.1"
	}
	switch {
	case ck.argv != nil:
		ex, ok := h.(runtime.Execer)
		if !ok {
			return false, "this node's runtime cannot run commands inside tasks; use an HTTP or TCP check"
		}
		code, out, err := ex.Exec(ctx, ck.argv)
		switch {
		case err != nil:
			return false, err.Error()
		case code != 0:
			if s := strings.TrimSpace(string(out)); s != "" {
				return false, fmt.Sprintf("exit code %d: %s", code, s)
			}
			return false, fmt.Sprintf("exit code %d", code)
		}
		return true, ""
	case ck.httpPort != 0:
		url := "http://" + net.JoinHostPort(host, strconv.Itoa(int(ck.httpPort))) + ck.httpPath
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err.Error()
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return false, fmt.Sprintf("GET %s: %s", url, resp.Status)
		}
		return true, ""
	case ck.tcpPort != 0:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(ck.tcpPort))))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	}
	return false, "the check names no probe"
}

// probeClient does not follow redirects (a 3xx passes, as in Kubernetes) and
// keeps no idle connections, so a probe never holds a socket to a task.
var probeClient = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// trimDetail keeps a probe's output short enough for a status message.
func trimDetail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxProbeDetail {
		s = strings.TrimSpace(s[:maxProbeDetail]) + "…"
	}
	return s
}
