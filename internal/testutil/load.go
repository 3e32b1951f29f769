package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LoadConfig is the HTTP load StartLoad sends.
type LoadConfig struct {
	URL     string // what every request GETs
	Workers int    // requests in flight at most; each worker sends one after another
	// Pace is the least time between the starts of one worker's requests,
	// so the load stays bounded on a small machine (0: back to back).
	Pace time.Duration
	// Timeout bounds one request; a request that takes longer fails.
	Timeout time.Duration
	// Header names a response header whose values are tallied (e.g. the
	// version a server reports); empty tallies nothing.
	Header string
	// Dial opens the connections (e.g. a Node's Dial, from its network
	// namespace); nil dials from the test's own.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Load is an HTTP load running in the background: StartLoad starts it, Stop
// ends it and says how it went. Every request opens a connection of its
// own, so each one crosses the whole network path and is routed anew.
type Load struct {
	cfg    LoadConfig
	client *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	results []loadResult
	stopped time.Time
}

// loadResult is one request: when it started and why it failed ("" if it
// did not), or the tallied header's value.
type loadResult struct {
	start  time.Time
	failed string
	header string
}

// LoadReport says how a load went. A request failed when it got no answer
// (connection refused or reset, timeout, connection closed) or an answer
// other than 2xx.
type LoadReport struct {
	Requests, Failed int
	// LongestOutage is the longest time from the start of a failed request
	// to the start of the next successful one (by start time, over all
	// workers); 0 without failures.
	LongestOutage time.Duration
	// Failures counts the failed requests by reason ("connection refused",
	// "HTTP 502", …); Examples holds the first failure of each reason in
	// full, in order.
	Failures map[string]int
	Examples []string
	// Headers counts the values of LoadConfig.Header among the successful
	// answers.
	Headers map[string]int
	// Duration is the time from the first request's start to Stop (or to
	// the report).
	Duration time.Duration
}

// StartLoad starts cfg.Workers goroutines sending GET cfg.URL until Stop or
// the end of the test.
func StartLoad(tb testing.TB, cfg LoadConfig) *Load {
	tb.Helper()
	if cfg.Workers < 1 || cfg.Timeout <= 0 || cfg.URL == "" {
		tb.Fatalf("StartLoad: need a URL, at least one worker and a timeout, got %+v", cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{
		cfg:    cfg,
		cancel: cancel,
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{DisableKeepAlives: true, DialContext: cfg.Dial}},
	}
	for range cfg.Workers {
		l.wg.Add(1)
		go l.work(ctx)
	}
	tb.Cleanup(func() { l.Stop() })
	return l
}

func (l *Load) work(ctx context.Context) {
	defer l.wg.Done()
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		pace.Reset(l.cfg.Pace)
		r := l.send(ctx)
		if ctx.Err() != nil {
			return // cut short by Stop: neither a success nor a failure
		}
		l.mu.Lock()
		l.results = append(l.results, r)
		l.mu.Unlock()
	}
}

// send makes one request.
func (l *Load) send(ctx context.Context) loadResult {
	r := loadResult{start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.cfg.URL, nil)
	if err != nil {
		r.failed = err.Error()
		return r
	}
	resp, err := l.client.Do(req)
	if err != nil {
		r.failed = reason(err) + ": " + err.Error()
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		r.failed = reason(err) + ": reading the body: " + err.Error()
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		r.failed = fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, strings.TrimSpace(string(body)))
	case l.cfg.Header != "":
		r.header = resp.Header.Get(l.cfg.Header)
	}
	return r
}

// reason is the kind of a failed request's error.
func reason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return "timeout"
	}
	return "other error"
}

// Stop ends the load, waits for the requests in flight and returns the
// report. Requests cut short by Stop are not counted. Calling it again
// returns the same report.
func (l *Load) Stop() LoadReport {
	l.mu.Lock()
	if l.stopped.IsZero() {
		l.stopped = time.Now()
	}
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
	return l.Report()
}

// Report says how the load went so far; the load goes on.
func (l *Load) Report() LoadReport {
	l.mu.Lock()
	results := slices.Clone(l.results)
	end := l.stopped
	l.mu.Unlock()
	if end.IsZero() {
		end = time.Now()
	}
	slices.SortFunc(results, func(a, b loadResult) int { return a.start.Compare(b.start) })
	rep := LoadReport{Requests: len(results), Failures: map[string]int{}, Headers: map[string]int{}}
	if len(results) > 0 {
		rep.Duration = end.Sub(results[0].start)
	}
	var outageFrom time.Time // the first failure since the last success
	for _, r := range results {
		if r.failed == "" {
			if r.header != "" {
				rep.Headers[r.header]++
			}
			if !outageFrom.IsZero() {
				rep.LongestOutage = max(rep.LongestOutage, r.start.Sub(outageFrom))
				outageFrom = time.Time{}
			}
			continue
		}
		rep.Failed++
		kind, _, _ := strings.Cut(r.failed, ":")
		if rep.Failures[kind] == 0 {
			rep.Examples = append(rep.Examples, r.start.Format("15:04:05.000")+" "+r.failed)
		}
		rep.Failures[kind]++
		if outageFrom.IsZero() {
			outageFrom = r.start
		}
	}
	if !outageFrom.IsZero() {
		rep.LongestOutage = max(rep.LongestOutage, end.Sub(outageFrom))
	}
	return rep
}

// String summarises the report for a log or failure message.
func (r LoadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %s, %d failed", r.Requests, r.Duration.Round(time.Millisecond), r.Failed)
	if r.Failed > 0 {
		fmt.Fprintf(&b, " (longest outage %s)", r.LongestOutage.Round(time.Millisecond))
		for _, k := range slices.Sorted(maps.Keys(r.Failures)) {
			fmt.Fprintf(&b, "; %s: %d", k, r.Failures[k])
		}
		b.WriteString("; the first of each:")
		for _, e := range r.Examples {
			b.WriteString("\n  " + e)
		}
	}
	if len(r.Headers) > 0 {
		fmt.Fprintf(&b, "\n  answers by header value: %v", r.Headers)
	}
	return b.String()
}
