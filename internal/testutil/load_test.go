package testutil

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A load counts every request, tallies the header of the answers, and
// counts as failures the non-2xx answers and the connections the server
// closes without an answer, with the outage they make.
func TestLoadCountsFailuresAndOutage(t *testing.T) {
	const (
		serving = iota
		erroring
		hangingUp
	)
	var mode atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case erroring:
			http.Error(w, "down for a moment", http.StatusBadGateway)
		case hangingUp:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			w.Header().Set("X-Version", "v1")
		}
	}))
	defer srv.Close()
	load := StartLoad(t, LoadConfig{URL: srv.URL, Workers: 3, Pace: time.Millisecond, Timeout: 5 * time.Second, Header: "X-Version"})

	// waitFor polls the running load's report until ok accepts it.
	waitFor := func(what string, ok func(LoadReport) bool) {
		t.Helper()
		Eventually(t, 10*time.Second, func() error {
			if rep := load.Report(); !ok(rep) {
				return fmt.Errorf("waiting for %s: %s", what, rep)
			}
			return nil
		})
	}
	waitFor("answers", func(r LoadReport) bool { return r.Headers["v1"] > 0 })
	mode.Store(erroring)
	waitFor("502s", func(r LoadReport) bool { return r.Failures["HTTP 502"] > 0 })
	mode.Store(hangingUp)
	waitFor("closed connections", func(r LoadReport) bool { return r.Failures["connection closed"] > 0 })
	mode.Store(serving)
	before := load.Report().Headers["v1"]
	waitFor("answers again", func(r LoadReport) bool { return r.Headers["v1"] > before })
	rep := load.Stop()

	if rep.Failed != rep.Failures["HTTP 502"]+rep.Failures["connection closed"] {
		t.Errorf("failures by reason %v do not add up to %d failed requests", rep.Failures, rep.Failed)
	}
	if rep.Requests != rep.Failed+rep.Headers["v1"] {
		t.Errorf("%d requests, %d failed and %d answered v1: some were lost", rep.Requests, rep.Failed, rep.Headers["v1"])
	}
	if rep.LongestOutage <= 0 || rep.LongestOutage > rep.Duration {
		t.Errorf("longest outage %s, want more than 0 and at most the load's %s", rep.LongestOutage, rep.Duration)
	}
	if len(rep.Examples) != len(rep.Failures) {
		t.Errorf("report shows %d failures in full, want the first of each of the %d reasons: %s", len(rep.Examples), len(rep.Failures), rep)
	}
	if again := load.Stop(); again.Requests != rep.Requests {
		t.Errorf("a second Stop reported %d requests, the first %d", again.Requests, rep.Requests)
	}
}

// A port nobody listens on refuses every request, and the outage lasts to
// the end of the load.
func TestLoadCountsRefusedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	load := StartLoad(t, LoadConfig{URL: "http://" + addr + "/", Workers: 1, Pace: time.Millisecond, Timeout: 5 * time.Second})
	Eventually(t, 10*time.Second, func() error {
		if rep := load.Report(); rep.Failures["connection refused"] < 3 {
			return fmt.Errorf("waiting for refused requests: %s", rep)
		}
		return nil
	})
	rep := load.Stop()
	if rep.Failed != rep.Requests || rep.LongestOutage != rep.Duration {
		t.Errorf("every request to a closed port should fail and the outage last the whole load: %s", rep)
	}
}
