package main

import (
	"strings"
	"testing"
)

const sample = `date: 2026-11-23T09:00:00Z
command: go test -run '^$' -bench '^BenchmarkLeaderFailover$' -benchtime 1x -count 2 -timeout 15m ./bench/
loadavg-before: 0.50 0.40 0.30
goos: linux
goarch: amd64
pkg: shoal/bench
cpu: Some CPU @ 2.0GHz
BenchmarkLeaderFailover/managers=3-2         	       1	      1213 ms/failover
--- BENCH: BenchmarkLeaderFailover/managers=3-2
    failover_test.go:28: killed leader m1; first write through m2 after 1.213s (1 attempts)
BenchmarkLeaderFailover/managers=3-2         	       1	       874.0 ms/failover
PASS
ok  	shoal/bench	10.352s
loadavg-after: 1.50 0.60 0.35
command: go test -run '^$' -bench '^BenchmarkControlWrites$' -benchtime 1x -count 1 -timeout 15m ./bench/
BenchmarkControlWrites/clients=64/via=leader-2        	       1	       240.8 aborted/s	      1802 entries/s	       95.23 writes/s
--- FAIL: BenchmarkControlWrites/clients=64/via=all-2
    writes_test.go:130: client 3: UpdateNode: unavailable
--- FAIL: BenchmarkControlWrites
FAIL
`

func TestParse(t *testing.T) {
	groups, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 3 {
		t.Fatalf("got %d groups, want 3 (preamble, failover, writes)", len(groups))
	}
	pre, fo, wr := groups[0], groups[1], groups[2]
	if pre.Command != "" || pre.Config["date"] != "2026-11-23T09:00:00Z" {
		t.Errorf("preamble = %+v, want the date and no command", pre)
	}
	if want := `go test -run '^$' -bench '^BenchmarkLeaderFailover$' -benchtime 1x -count 2 -timeout 15m ./bench/`; fo.Command != want {
		t.Errorf("command = %q, want %q", fo.Command, want)
	}
	if fo.Config["cpu"] != "Some CPU @ 2.0GHz" || fo.Config["loadavg-before"] != "0.50 0.40 0.30" || fo.Config["loadavg-after"] != "1.50 0.60 0.35" {
		t.Errorf("failover config = %v", fo.Config)
	}
	if len(fo.Results) != 2 || fo.Results[0].Name != "BenchmarkLeaderFailover/managers=3" ||
		fo.Results[0].Metrics["ms/failover"] != 1213 || fo.Results[1].Metrics["ms/failover"] != 874 {
		t.Errorf("failover results = %+v", fo.Results)
	}
	if len(wr.Results) != 1 || wr.Results[0].Metrics["entries/s"] != 1802 || wr.Results[0].Metrics["writes/s"] != 95.23 {
		t.Errorf("writes results = %+v", wr.Results)
	}
	if len(wr.Failed) != 2 || wr.Failed[0] != "BenchmarkControlWrites/clients=64/via=all" || wr.Failed[1] != "BenchmarkControlWrites" {
		t.Errorf("failed = %v", wr.Failed)
	}
}

func TestParseJoinsAResultCutByAnotherProcess(t *testing.T) {
	groups, err := parse(strings.NewReader("command: go test -bench BenchmarkMesh\n" +
		"BenchmarkMesh-2   \tready\nready\n       1\t         6.085 p99-ms-mesh-http\t 0.8566 x-nginx-http\n" +
		"--- BENCH: BenchmarkMesh-2\n    mesh_test.go:77: round 1 mesh-tcp: 32257 requests/s, p99 5.30 ms\n" +
		"BenchmarkMesh-2   \t       1\t         5.835 p99-ms-mesh-http\t 0.8266 x-nginx-http\n"))
	if err != nil {
		t.Fatal(err)
	}
	res := groups[0].Results
	if len(res) != 2 || res[0].Name != "BenchmarkMesh" || res[0].Metrics["x-nginx-http"] != 0.8566 || res[1].Metrics["x-nginx-http"] != 0.8266 {
		t.Fatalf("results %+v; want both runs of BenchmarkMesh", res)
	}
}

func TestParseRejectsUnpairedMetrics(t *testing.T) {
	if _, err := parse(strings.NewReader("BenchmarkX-2  1  12 ns/op 7\n")); err == nil {
		t.Fatal("parse accepted a value without a unit")
	}
}

func TestSummaryAndTarget(t *testing.T) {
	groups, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	d := newData(groups)
	s, ok := d.summary("BenchmarkLeaderFailover/managers=3", "ms/failover")
	if !ok || s.N != 2 || s.Median != (1213+874)/2.0 || s.Min != 874 || s.Max != 1213 {
		t.Errorf("summary = %+v, %v", s, ok)
	}
	for _, tc := range []struct {
		t      target
		median float64
		met    bool
	}{
		{target{AtMost: true, Value: 2000}, 1043.5, true},
		{target{AtMost: true, Value: 2000}, 2000.1, false},
		{target{AtMost: false, Value: 20000}, 95, false},
		{target{AtMost: false, Value: 20000}, 20000, true},
	} {
		if got := tc.t.met(tc.median); got != tc.met {
			t.Errorf("%s met(%v) = %v, want %v", tc.t.String(), tc.median, got, tc.met)
		}
	}
}

func TestFmtNum(t *testing.T) {
	for in, want := range map[float64]string{1234567: "1,234,567", 20000: "20,000", 874: "874", 95.23: "95.2", 3.32: "3.32"} {
		if got := fmtNum(in); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", in, got, want)
		}
	}
}
