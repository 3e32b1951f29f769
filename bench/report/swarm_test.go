package main

import (
	"strings"
	"testing"
)

// swarmSample is BenchmarkSwarm's output as bench/run.sh records it (from
// a real run).
const swarmSample = `command: go test -run '^$' -bench '^BenchmarkSwarm$' -benchtime 1x -count 1 -timeout 15m ./bench/
loadavg-before: 0.58 0.76 2.49
BenchmarkSwarm/scale-2         	       1	         0.6121 create-ratio	     17087 create-shoal-ms	     27918 create-swarm-ms	         0.6399 down-ratio	     14807 down-shoal-ms	     23139 down-swarm-ms	         0.4956 up-ratio	     16613 up-shoal-ms	     33524 up-swarm-ms
BenchmarkSwarm/update-2        	       1	         0.4349 update-ratio	     35613 update-shoal-ms	     81895 update-swarm-ms
BenchmarkSwarm/kill-2          	       1	         0.5194 replace-ratio	       650.9 replace-shoal-ms	      1253 replace-swarm-ms
BenchmarkSwarm/stack-2         	       1	         0.8681 stack-ratio	      9787 stack-shoal-ms	     11273 stack-swarm-ms
BenchmarkSwarm/load-2          	       1	         0 failed-shoal	       626.0 failed-swarm	         9.457 release-s-shoal	        16.90 release-s-swarm	      5929 requests-shoal	      9151 requests-swarm
PASS
loadavg-after: 12.55 25.03 15.71
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
		"| Swarm side by side: create 50 replicas, shoal / Swarm | 0.61 create-ratio | 0.61–0.61 | 1 | ≤ 0.20 create-ratio | **NOT met** |",
		"| Swarm side by side: scale 100 → 0, shoal / Swarm | 0.64 down-ratio | 0.64–0.64 | 1 | ≤ 0.20 down-ratio | **NOT met** |",
		"| Swarm side by side: rolling update of 10 replicas, shoal / Swarm | 0.43 update-ratio | 0.43–0.43 | 1 | none | – |",
		"| Swarm side by side: failed requests during a rolling update, shoal | 0.00 failed-shoal | 0.00–0.00 | 1 | ≤ 0.00 failed-shoal | met |",
		"| Swarm side by side: failed requests during a rolling update, Swarm | 626 failed-swarm | 626–626 | 1 | none | – |",
		"- Observed: shoal took 17,087 ms, Swarm 27,918 ms (medians; min–max 17,087–17,087 and 27,918–27,918 ms).",
		"- Observed: shoal: 0.00 failed of 5,929 requests, release 9.46 s; Swarm: 626 failed of 9,151 requests, release 16.9 s (medians).",
		"- What limits it: shoal took 14,807 ms against Swarm's 23,139 ms.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}
