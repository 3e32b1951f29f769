package main

import (
	"strings"
	"testing"
)

// rolloutSample is BenchmarkRollingUpdate's output as bench/run.sh records
// it (from a real run).
const rolloutSample = `command: go test -run '^$' -bench '^BenchmarkRollingUpdate$' -benchtime 1x -count 1 -timeout 15m ./bench/
loadavg-before: 7.39 10.67 10.65
BenchmarkRollingUpdate/shoal/order=start-first-2         	       1	         0 failed	         0 failed-at-rest	         0.4686 p99-ratio	        58.10 p99-release-ms	       124.0 p99-rest-ms	        15.26 release-s
BenchmarkRollingUpdate/shoal/order=stop-first-2          	       1	         0 failed	         0 failed-at-rest	         0.2499 p99-ratio	        25.03 p99-release-ms	       100.2 p99-rest-ms	        11.34 release-s
BenchmarkRollingUpdate/nginx/blue-green-2                	       1	        16.00 failed	         0 failed-at-rest	         1.545 p99-ratio	        42.20 p99-release-ms	        27.31 p99-rest-ms	         6.027 release-s
PASS
loadavg-after: 8.67 9.88 10.34
`

// Every rolling-update figure finds its metric; shoal's failed requests
// and p99 ratios carry the targets, nginx's (the peer) none.
func TestRolloutFigures(t *testing.T) {
	groups, err := parse(strings.NewReader(rolloutSample))
	if err != nil {
		t.Fatal(err)
	}
	d := newData(groups)
	if len(rolloutFigures) != 12 {
		t.Fatalf("%d rolling-update figures, want 12", len(rolloutFigures))
	}
	for _, f := range rolloutFigures {
		if _, ok := d.summary(f.Bench, f.Unit); !ok {
			t.Errorf("%s: no %s result for %s", f.Title, f.Unit, f.Bench)
		}
		want := ""
		if f.Bench != rolloutNginx {
			want = map[string]string{"failed": "≤ 0.00", "p99-ratio": "≤ 2.00"}[f.Unit]
		}
		got := ""
		if f.Target != nil {
			got = f.Target.String()
		}
		if got != want {
			t.Errorf("%s: target %q, want %q", f.Title, got, want)
		}
	}
	var out strings.Builder
	render(&out, report{Mode: "quick", Raw: "bench/results/quick.txt", Groups: groups, Data: d})
	for _, row := range []string{
		"| Rolling update, start-first: failed requests | 0.00 failed | 0.00–0.00 | 1 | ≤ 0.00 failed | met |",
		"| Rolling update, stop-first: p99 during / at rest | 0.25 p99-ratio | 0.25–0.25 | 1 | ≤ 2.00 p99-ratio | met |",
		"| nginx blue-green release by hand: failed requests | 16.0 failed | 16.0–16.0 | 1 | none | – |",
	} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("the summary table lacks the row %q:\n%s", row, out.String())
		}
	}
}
