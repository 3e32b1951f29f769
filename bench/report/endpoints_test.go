package main

import (
	"strings"
	"testing"
)

// endpointsSample is BenchmarkEndpoints' output as bench/run.sh records it
// (from a real run).
const endpointsSample = `command: go test -run '^$' -bench '^BenchmarkEndpoints$' -benchtime 1x -count 1 -timeout 15m ./bench/
loadavg-before: 0.50 0.40 0.30
BenchmarkEndpoints/nodes=3-2         	       1	        20.82 ready-to-dns-p50-ms	        48.67 ready-to-dns-p99-ms	        22.31 stop-to-dns-p50-ms	        65.00 stop-to-dns-p99-ms
--- BENCH: BenchmarkEndpoints/nodes=3-2
    endpoints_test.go:98: ready → resolvable (ms): [48.7 15.6]
PASS
loadavg-after: 1.50 0.60 0.35
`

// Every endpoint figure finds its metric in the benchmark's output, and
// only the ready → resolvable ones carry the 100 ms target.
func TestEndpointsFigures(t *testing.T) {
	groups, err := parse(strings.NewReader(endpointsSample))
	if err != nil {
		t.Fatal(err)
	}
	d := newData(groups)
	want := map[string]float64{
		"ready-to-dns-p50-ms": 20.82, "ready-to-dns-p99-ms": 48.67,
		"stop-to-dns-p50-ms": 22.31, "stop-to-dns-p99-ms": 65,
	}
	if len(endpointsFigures) != len(want) {
		t.Fatalf("%d endpoint figures, want %d", len(endpointsFigures), len(want))
	}
	for _, f := range endpointsFigures {
		s, ok := d.summary(f.Bench, f.Unit)
		if !ok || s.Median != want[f.Unit] {
			t.Errorf("%s: summary %+v, %v; want median %v", f.Title, s, ok, want[f.Unit])
		}
		ready := strings.HasPrefix(f.Unit, "ready-")
		if ready && (f.Target == nil || f.Target.String() != "≤ 100") {
			t.Errorf("%s: target %v, want ≤ 100", f.Title, f.Target)
		}
		if !ready && f.Target != nil {
			t.Errorf("%s: target %v, want none", f.Title, f.Target)
		}
	}
	var out strings.Builder
	render(&out, report{Mode: "quick", Raw: "bench/results/quick.txt", Groups: groups, Data: d})
	if !strings.Contains(out.String(), "| Endpoints: task ready → resolvable on another node, median | 20.8 ready-to-dns-p50-ms | 20.8–20.8 | 1 | ≤ 100 ready-to-dns-p50-ms | met |") {
		t.Errorf("the summary table lacks the ready → resolvable row:\n%s", out.String())
	}
}
