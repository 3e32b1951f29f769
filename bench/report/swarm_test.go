package main

import (
	"strings"
	"testing"
)

// swarmSample is BenchmarkSwarm's output as bench/run.sh records it.
const swarmSample = `command: go test -run '^$' -bench '^BenchmarkSwarm$' -benchtime 1x -count 1 -timeout 15m ./bench/
loadavg-before: 1.20 1.40 1.50
BenchmarkSwarm/scale-2         	       1	         0 ns/op	         0.1500 create-ratio	      1500 create-shoal-ms	     10000 create-swarm-ms	         0.5000 down-ratio	      2000 down-shoal-ms	      4000 down-swarm-ms	         0.1000 up-ratio	      1600 up-shoal-ms	     16000 up-swarm-ms
BenchmarkSwarm/update-2        	       1	         0 ns/op	         1.500 update-ratio	     45000 update-shoal-ms	     30000 update-swarm-ms
BenchmarkSwarm/kill-2          	       1	         0 ns/op	         0.2000 replace-ratio	       400.0 replace-shoal-ms	      2000 replace-swarm-ms
BenchmarkSwarm/stack-2         	       1	         0 ns/op	         1.200 stack-ratio	     12000 stack-shoal-ms	     10000 stack-swarm-ms
BenchmarkSwarm/load-2          	       1	         0 ns/op	         0 failed-shoal	        35.00 failed-swarm	        12.00 release-s-shoal	         9.000 release-s-swarm	      3000 requests-shoal	      2500 requests-swarm
PASS
loadavg-after: 2.10 1.60 1.55
`

// Every Swarm figure finds its metric; create and scale carry the 1/5
// target, shoal's failed requests the zero target, the rest none; each
// ratio is shown beside both systems' times.
func TestSwarmFigures(t *testing.T) {
	groups, err := parse(strings.NewReader(swarmSample))
	if err != nil {
		t.Fatal(err)
	}
	d := newData(groups)
	targets := map[string]string{"create-ratio": "≤ 0.20", "up-ratio": "≤ 0.20", "down-ratio": "≤ 0.20", "failed-shoal": "≤ 0.00"}
	for _, f := range swarmFigures {
		if _, ok := d.summary(f.Bench, f.Unit); !ok {
			t.Errorf("%s: no %s result for %s", f.Title, f.Unit, f.Bench)
		}
		got := ""
		if f.Target != nil {
			got = f.Target.String()
		}
		if want := targets[f.Unit]; got != want {
			t.Errorf("%s: target %q, want %q", f.Title, got, want)
		}
	}
	var out strings.Builder
	render(&out, report{Mode: "quick", Raw: "bench/results/quick.txt", Groups: groups, Data: d})
	for _, want := range []string{
		"| Swarm side by side: create 50 replicas, shoal / Swarm | 0.15 create-ratio | 0.15–0.15 | 1 | ≤ 0.20 create-ratio | met |",
		"| Swarm side by side: scale 100 → 0, shoal / Swarm | 0.50 down-ratio | 0.50–0.50 | 1 | ≤ 0.20 down-ratio | **NOT met** |",
		"| Swarm side by side: rolling update of 10 replicas, shoal / Swarm | 1.50 update-ratio | 1.50–1.50 | 1 | none | – |",
		"| Swarm side by side: failed requests during a rolling update, shoal | 0.00 failed-shoal | 0.00–0.00 | 1 | ≤ 0.00 failed-shoal | met |",
		"| Swarm side by side: failed requests during a rolling update, Swarm | 35.0 failed-swarm | 35.0–35.0 | 1 | none | – |",
		"- Observed: shoal took 1,500 ms, Swarm 10,000 ms (medians; min–max 1,500–1,500 and 10,000–10,000 ms).",
		"- Observed: shoal: 0.00 failed of 3,000 requests, release 12.0 s; Swarm: 35.0 failed of 2,500 requests, release 9.00 s (medians).",
		"- What limits it: shoal took 2,000 ms against Swarm's 4,000 ms.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}
