// Package bench holds shoal's benchmarks. The cluster benchmarks run real
// shoal processes (internal/testutil), each node on its own 127.x address,
// and measure what a user sees: failover, write throughput, failure
// detection and memory. BenchmarkStorePropose is an in-process micro
// benchmark of the replicated store alone.
//
// Each benchmark starts its cluster once, in the parent benchmark, and its
// leaf sub-benchmarks reuse it: `go test -count N` repeats a leaf N times
// within one parent call, so every run of a leaf is one sample on the same
// cluster. Run them with bench/run.sh (make bench, make bench-quick), which
// also writes docs/benchmarks.md; every wait is bounded.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// pollInterval is how often the timed benchmarks look for the event they
// time; it bounds their resolution.
const pollInterval = 10 * time.Millisecond

// eventTimeout bounds one timed event (a failover, a detection): a product
// that takes longer fails the benchmark instead of hanging it.
const eventTimeout = 60 * time.Second

// conn is a gRPC connection to a node's local socket (no TLS: the socket's
// file mode is the credential), closed when tb ends.
func conn(tb testing.TB, n *testutil.Node) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(n.Socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("%s: dial %s: %v", n.Name, n.Socket(), err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// control returns a ControlService client on a node's local socket.
func control(tb testing.TB, n *testutil.Node) shoalpb.ControlServiceClient {
	tb.Helper()
	return shoalpb.NewControlServiceClient(conn(tb, n))
}

// readyControl returns a ControlService client on n whose connection is up:
// a fresh connection after a restart would otherwise spend its first calls
// connecting, or fail them during gRPC's reconnect backoff.
func readyControl(tb testing.TB, n *testutil.Node) shoalpb.ControlServiceClient {
	tb.Helper()
	c := control(tb, n)
	testutil.Eventually(tb, testutil.SettleTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.GetNode(ctx, &shoalpb.GetNodeRequest{Node: "self"})
		return err
	})
	return c
}

// nodeState returns the state of node id in c's ListNodes.
func nodeState(ctx context.Context, c shoalpb.ControlServiceClient, id string) (shoalpb.NodeState, error) {
	resp, err := c.ListNodes(ctx, &shoalpb.ListNodesRequest{})
	if err != nil {
		return 0, err
	}
	for _, v := range resp.Nodes {
		if v.Node.GetId() == id {
			return v.Node.GetStatus().GetState(), nil
		}
	}
	return 0, fmt.Errorf("node %s is not listed", id)
}

// pollUntil calls fn every pollInterval until it reports done, and returns
// the time since start at which it did. It fails tb after eventTimeout,
// naming what it waited for and fn's last error.
func pollUntil(tb testing.TB, start time.Time, what string, fn func(ctx context.Context) (bool, error)) time.Duration {
	tb.Helper()
	var last error
	for time.Since(start) < eventTimeout {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		done, err := fn(ctx)
		cancel()
		if done {
			return time.Since(start)
		}
		last = err
		time.Sleep(pollInterval)
	}
	tb.Fatalf("no %s within %s (last error: %v)", what, eventTimeout, last)
	return 0
}

// median returns the median of samples (the mean of the middle two for an
// even count), 0 for none.
func median(samples []float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// procStatusMiB returns a memory figure of process pid in MiB, from the
// field of /proc/PID/status ("VmRSS": resident set size, "VmHWM": its peak,
// "RssAnon" and "RssFile": its anonymous and file-backed parts).
func procStatusMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %s %q: %w", pid, field, rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s line", pid, field)
}

// cpuSample is the CPU time used so far by the leader, the followers
// together and this process, in seconds.
type cpuSample struct{ leader, followers, self float64 }

func cpuTimes(b *testing.B, leader *testutil.Node, followers []*testutil.Node) cpuSample {
	b.Helper()
	var s cpuSample
	var err error
	if s.leader, err = processCPU(leader.PID()); err != nil {
		b.Fatalf("%s: %v", leader.Name, err)
	}
	for _, f := range followers {
		v, err := processCPU(f.PID())
		if err != nil {
			b.Fatalf("%s: %v", f.Name, err)
		}
		s.followers += v
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	return s
}

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat; 100 on
// every Linux architecture Go supports.
const clockTick = 100

// processCPU returns the user plus system CPU seconds process pid has used,
// from /proc/PID/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start at field 3.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(fields[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) / clockTick, nil
}
