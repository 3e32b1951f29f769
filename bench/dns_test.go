package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"shoal/netdns"
)

// The DNS benchmark's table: dnsServices services of dnsTasks ready tasks.
const (
	dnsServices = 100
	dnsTasks    = 3
	// dnsperfSeconds is the length of one throughput run.
	dnsperfSeconds = 10
	// dnsLatencyQPS is the fixed load of the latency runs: both servers
	// answer it without loss, so the p99 is service time, not a queue.
	dnsLatencyQPS = 10000
)

// BenchmarkDNS compares the node's DNS server (netdns, in this process)
// with dnsmasq (a separate process) answering the same service names from
// the same addresses over UDP on 127.0.0.1, both loaded by dnsperf with one
// query file of A queries. Throughput: two 10 s runs per server,
// alternately, at dnsperf's full speed (-c 4 -q 500); qps per core divides
// a server's rate by the CPU it used per wall second: for netdns the
// getrusage delta of this process (dnsperf is another process; the test
// itself only waits), for dnsmasq its /proc/PID/stat. Latency: one 5 s run
// per server at a fixed 10,000 queries/s with dnsperf -v, p99 over every
// query. Then the server side of service discovery: Swap a table with one
// more ready task until a query sees it, and one without it until a query
// no longer does.
func BenchmarkDNS(b *testing.B) {
	dnsperf := dnsNeed(b, "dnsperf")
	dnsmasqBin := dnsNeed(b, "dnsmasq")
	dir := b.TempDir()
	records, hosts, queries := dnsBenchData()
	hostsFile, queryFile := filepath.Join(dir, "hosts"), filepath.Join(dir, "queries")
	if err := os.WriteFile(hostsFile, []byte(hosts), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(queryFile, []byte(queries), 0o644); err != nil {
		b.Fatal(err)
	}
	srv, shoalAddr := dnsStartShoal(b, records)
	dnsmasqAddr, dnsmasqPID := dnsStartDnsmasq(b, dnsmasqBin, hostsFile)

	b.Run(fmt.Sprintf("services=%d/tasks=%d", dnsServices, dnsTasks), func(b *testing.B) {
		var qpsShoal, qpsDnsmasq, coreShoal, coreDnsmasq, p99Shoal, p99Dnsmasq, resolvable, gone []float64
		for b.Loop() {
			for range 2 {
				before := dnsSelfCPU(b)
				r := dnsperfRun(b, dnsperf, shoalAddr, queryFile, "-c", "4", "-q", "500", "-l", strconv.Itoa(dnsperfSeconds))
				cpu := dnsSelfCPU(b) - before
				qpsShoal = append(qpsShoal, r.qps)
				coreShoal = append(coreShoal, r.qps/(cpu/r.seconds))
				b.Logf("netdns: %.0f queries/s, %.2f CPU seconds per second, %d lost", r.qps, cpu/r.seconds, r.lost)

				before, err := processCPU(dnsmasqPID)
				if err != nil {
					b.Fatal(err)
				}
				r = dnsperfRun(b, dnsperf, dnsmasqAddr, queryFile, "-c", "4", "-q", "500", "-l", strconv.Itoa(dnsperfSeconds))
				after, err := processCPU(dnsmasqPID)
				if err != nil {
					b.Fatal(err)
				}
				qpsDnsmasq = append(qpsDnsmasq, r.qps)
				coreDnsmasq = append(coreDnsmasq, r.qps/((after-before)/r.seconds))
				b.Logf("dnsmasq: %.0f queries/s, %.2f CPU seconds per second, %d lost", r.qps, (after-before)/r.seconds, r.lost)
			}
			latency := []string{"-c", "4", "-l", "5", "-Q", strconv.Itoa(dnsLatencyQPS), "-v"}
			p99Shoal = append(p99Shoal, dnsperfRun(b, dnsperf, shoalAddr, queryFile, latency...).p99ms)
			p99Dnsmasq = append(p99Dnsmasq, dnsperfRun(b, dnsperf, dnsmasqAddr, queryFile, latency...).p99ms)
			for i := range 20 {
				up, down := dnsDiscovery(b, srv, shoalAddr, records, i)
				resolvable, gone = append(resolvable, ms(up)), append(gone, ms(down))
			}
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(median(qpsShoal), "qps-shoal")
		b.ReportMetric(median(qpsDnsmasq), "qps-dnsmasq")
		b.ReportMetric(median(qpsShoal)/median(qpsDnsmasq), "x-dnsmasq")
		b.ReportMetric(median(coreShoal), "qps-per-core-shoal")
		b.ReportMetric(median(coreDnsmasq), "qps-per-core-dnsmasq")
		b.ReportMetric(median(p99Shoal), "p99-ms-shoal")
		b.ReportMetric(median(p99Dnsmasq), "p99-ms-dnsmasq")
		b.ReportMetric(median(resolvable), "ms-ready-to-resolvable")
		b.ReportMetric(median(gone), "ms-stopping-to-gone")
	})
}

// dnsBenchData builds the records, the matching dnsmasq hosts file (each
// service name with its VIP) and the dnsperf query file (every service
// name, type A).
func dnsBenchData() (netdns.Records, string, string) {
	var r netdns.Records
	var hosts, queries strings.Builder
	for i := range dnsServices {
		name := fmt.Sprintf("svc%d", i)
		vip := netip.AddrFrom4([4]byte{10, 200, byte(i / 250), byte(i%250 + 2)})
		svc := netdns.Service{ID: name, Names: []string{name, name + ".stack"}, Networks: []netdns.Attachment{{Network: "n1", VIP: vip}}}
		for t := range dnsTasks {
			svc.Tasks = append(svc.Tasks, netdns.Task{
				Name:  fmt.Sprintf("%s.%d.t%d", name, t+1, t),
				Addrs: map[string]netip.Addr{"n1": netip.AddrFrom4([4]byte{10, 201, byte(i), byte(t + 2)})},
			})
		}
		r.Services = append(r.Services, svc)
		fmt.Fprintf(&hosts, "%s %s\n", vip, name)
		fmt.Fprintf(&queries, "%s A\n", name)
	}
	return r, hosts.String(), queries.String()
}

func dnsNeed(b *testing.B, name string) string {
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		b.Fatalf("%s is not installed (scripts/install-deps.sh installs it)", name)
	}
	b.Skipf("%s is not installed", name)
	return ""
}

func dnsStartShoal(b *testing.B, r netdns.Records) (*netdns.Server, string) {
	s, err := netdns.NewServer(netdns.Config{
		Addrs:     []string{"127.0.0.1:0"},
		Upstreams: []string{"127.0.0.1:1"}, // the benchmark's names are all the cluster's
		TTL:       time.Second,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	s.Swap(netdns.NewTable(r))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Ready():
	case err := <-done:
		b.Fatalf("netdns: %v", err)
	}
	return s, s.Addrs()[0]
}

// dnsStartDnsmasq runs dnsmasq with its cache on, answering the hosts file
// with TTL 1 like netdns, and nothing else.
func dnsStartDnsmasq(b *testing.B, bin, hostsFile string) (string, int) {
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		l.Close()
		cmd := exec.Command(bin, "--keep-in-foreground", "--port="+port, "--listen-address=127.0.0.1", "--bind-interfaces",
			"--no-resolv", "--no-hosts", "--addn-hosts="+hostsFile, "--conf-file=/dev/null", "--user=root", "--group=root",
			"--local-ttl=1", "--cache-size=1000", "--pid-file=")
		if err := cmd.Start(); err != nil {
			b.Fatalf("dnsmasq: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); <-exited })
		addr := net.JoinHostPort("127.0.0.1", port)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{}
				continue
			default:
			}
			m := new(dns.Msg)
			m.SetQuestion("svc0.", dns.TypeA)
			c := &dns.Client{Timeout: 200 * time.Millisecond}
			if resp, _, err := c.Exchange(m, addr); err == nil && len(resp.Answer) == 1 {
				return addr, cmd.Process.Pid
			}
		}
	}
	b.Fatal("dnsmasq did not start")
	return "", 0
}

// dnsSelfCPU is the CPU seconds this process has used.
func dnsSelfCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

type dnsperfResult struct {
	qps, seconds, p99ms float64
	lost                int
}

// dnsperfRun runs dnsperf against addr and parses its statistics; with -v
// it also takes the p99 of the per-query latencies it prints.
func dnsperfRun(b *testing.B, bin, addr, queryFile string, args ...string) dnsperfResult {
	host, port, _ := net.SplitHostPort(addr)
	args = append([]string{"-s", host, "-p", port, "-d", queryFile, "-t", "2"}, args...)
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		b.Fatalf("dnsperf %v: %v\n%s", args, err, out)
	}
	r, err := parseDnsperf(string(out))
	if err != nil {
		b.Fatalf("dnsperf %v: %v\n%s", args, err, out)
	}
	return r
}

func parseDnsperf(out string) (dnsperfResult, error) {
	var r dnsperfResult
	var lat []float64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "> ") && len(f) >= 5:
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				lat = append(lat, v*1000)
			}
		case strings.HasPrefix(line, "Queries per second:") && len(f) == 4:
			r.qps, _ = strconv.ParseFloat(f[3], 64)
		case strings.HasPrefix(line, "Run time (s):") && len(f) == 4:
			r.seconds, _ = strconv.ParseFloat(f[3], 64)
		case strings.HasPrefix(line, "Queries lost:") && len(f) >= 3:
			r.lost, _ = strconv.Atoi(f[2])
		}
	}
	if r.qps == 0 || r.seconds == 0 {
		return r, fmt.Errorf("no queries per second or run time in dnsperf's output")
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p99ms = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r, nil
}

// dnsDiscovery times the server side of a task becoming ready and then
// stopping: Swap a table with one more task on service i%dnsServices, query
// tasks.<service> until its address is there; Swap the original table back,
// query until it is gone.
func dnsDiscovery(b *testing.B, srv *netdns.Server, addr string, records netdns.Records, i int) (up, down time.Duration) {
	svc := i % dnsServices
	more := netdns.Records{Services: slices.Clone(records.Services)}
	newAddr := netip.AddrFrom4([4]byte{10, 202, byte(svc), byte(i%200 + 2)})
	s := more.Services[svc]
	s.Tasks = append(slices.Clone(s.Tasks), netdns.Task{Name: fmt.Sprintf("svc%d.9.new%d", svc, i), Addrs: map[string]netip.Addr{"n1": newAddr}})
	more.Services[svc] = s
	name := fmt.Sprintf("tasks.svc%d.", svc)
	c := &dns.Client{Timeout: time.Second}
	has := func() bool {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		resp, _, err := c.Exchange(m, addr)
		if err != nil {
			b.Fatalf("query %s: %v", name, err)
		}
		return slices.ContainsFunc(resp.Answer, func(rr dns.RR) bool { return rr.(*dns.A).A.Equal(newAddr.AsSlice()) })
	}
	wait := func(want bool) {
		deadline := time.Now().Add(10 * time.Second)
		for has() != want {
			if time.Now().After(deadline) {
				b.Fatalf("%s: new task present=%v after 10 s, want %v", name, !want, want)
			}
		}
	}
	start := time.Now()
	srv.Swap(netdns.NewTable(more)) // the agent builds the table: counted
	wait(true)
	up = time.Since(start)
	start = time.Now()
	srv.Swap(netdns.NewTable(records))
	wait(false)
	return up, time.Since(start)
}
