package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// meshLoad is the wrk load of every mesh measurement: 2 threads, 64
// keep-alive connections, 10 s.
var meshLoad = []string{"-t2", "-c64", "-d10s", "--latency"}

// BenchmarkMesh measures the routing mesh's HTTP throughput and tail
// latency against nginx configured as a competent operator would, all in
// the same run on the same machine:
//
//   - the backends: one nginx process (1 worker) with three servers on
//     127.0.0.1 answering `200 ok`, standing in for three tasks;
//   - (a) the mesh in TCP mode and (b) in HTTP mode, each a process of its
//     own (worker/mesh/internal/meshproxy, GOMAXPROCS = the machine's 2
//     cores), so it does not share the Go benchmark process;
//   - (c) nginx with 2 worker processes (as many as the mesh's
//     GOMAXPROCS) proxying to an upstream of the three servers with
//     keep-alive (`keepalive 32`, `proxy_http_version 1.1`,
//     `proxy_set_header Connection ""`) and X-Forwarded-For added, as the
//     mesh's HTTP mode does.
//
// wrk (2 threads, 64 connections, 10 s) runs against a, b, c, then again
// a, b, c; each figure is the mean of its two runs. wrk, the proxies and the
// backends share the machine's cores, as they would on a node.
func BenchmarkMesh(b *testing.B) {
	for _, tool := range []string{"nginx", "wrk", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("BenchmarkMesh needs %s on PATH (scripts/install-deps.sh installs it): %v", tool, err)
		}
	}
	dir := b.TempDir()
	backends := []int{freeBenchPort(b), freeBenchPort(b), freeBenchPort(b)}
	nginxPort, tcpPort, httpPort := freeBenchPort(b), freeBenchPort(b), freeBenchPort(b)

	startNginx(b, dir, "backends", backendsConf(backends))
	for _, p := range backends {
		waitHTTP(b, p)
	}
	servers := make([]string, len(backends))
	for i, p := range backends {
		servers[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	startNginx(b, dir, "proxy", proxyConf(fmt.Sprintf("127.0.0.1:%d", nginxPort), servers))
	proxy := buildMeshProxy(b, dir)
	startMeshProxy(b, proxy, "tcp", tcpPort, backends)
	startMeshProxy(b, proxy, "http", httpPort, backends)
	targets := []struct {
		name string
		port int
	}{{"mesh-tcp", tcpPort}, {"mesh-http", httpPort}, {"nginx", nginxPort}}
	for _, t := range targets {
		waitHTTP(b, t.port)
	}

	for b.Loop() {
		rps, p99 := map[string]float64{}, map[string]float64{}
		for round := range 2 {
			for _, t := range targets {
				r, l := runWrk(b, t.port)
				b.Logf("round %d %s: %.0f requests/s, p99 %.2f ms", round+1, t.name, r, l)
				rps[t.name] += r / 2
				p99[t.name] += l / 2
			}
		}
		b.ReportMetric(0, "ns/op")
		for _, t := range targets {
			b.ReportMetric(rps[t.name], "rps-"+t.name)
			b.ReportMetric(p99[t.name], "p99-ms-"+t.name)
		}
		b.ReportMetric(rps["mesh-tcp"]/rps["nginx"], "x-nginx-tcp")
		b.ReportMetric(rps["mesh-http"]/rps["nginx"], "x-nginx-http")
	}
}

func freeBenchPort(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// nginxCommon is the part of both nginx configurations that keeps nginx's
// files in the benchmark's temporary directory.
const nginxCommon = `
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  keepalive_requests 1000000;
`

func backendsConf(ports []int) string {
	var sb strings.Builder
	sb.WriteString("worker_processes 1;\n" + nginxCommon)
	for _, p := range ports {
		fmt.Fprintf(&sb, "  server { listen 127.0.0.1:%d; location / { return 200 \"ok\\n\"; } }\n", p)
	}
	sb.WriteString("}\n")
	return sb.String()
}

// proxyConf is nginx proxying listen (host:port) to an upstream of servers
// (host:port each), as a competent operator configures it.
func proxyConf(listen string, servers []string) string {
	var sb strings.Builder
	sb.WriteString("worker_processes 2;\n" + nginxCommon + "  upstream tasks {\n")
	for _, s := range servers {
		fmt.Fprintf(&sb, "    server %s;\n", s)
	}
	fmt.Fprintf(&sb, `    keepalive 32;
  }
  server {
    listen %s;
    location / {
      proxy_pass http://tasks;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`, listen)
	return sb.String()
}

// startNginx runs one nginx in the foreground with conf, its files under
// dir/name, and stops it at cleanup.
func startNginx(b *testing.B, dir, name, conf string) {
	b.Helper()
	startProcess(b, exec.Command("nginx", nginxArgs(b, dir, name, conf)...), syscall.SIGQUIT)
}

// nginxArgs writes conf to dir/name/nginx.conf and returns the arguments
// that run nginx in the foreground on it with its files under dir/name;
// with "-s", "reload" appended they make it reload the file.
func nginxArgs(b *testing.B, dir, name, conf string) []string {
	b.Helper()
	prefix := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o777); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	return []string{"-c", file, "-p", prefix + "/",
		"-e", filepath.Join(prefix, "error.log"),
		"-g", fmt.Sprintf("daemon off; pid %s; error_log %s warn;", filepath.Join(prefix, "nginx.pid"), filepath.Join(prefix, "error.log"))}
}

// buildMeshProxy builds the mesh's one-port command.
func buildMeshProxy(b *testing.B, dir string) string {
	b.Helper()
	bin := filepath.Join(dir, "meshproxy")
	out, err := exec.Command("go", "build", "-o", bin, "shoal/worker/mesh/internal/meshproxy").CombinedOutput()
	if err != nil {
		b.Fatalf("build meshproxy: %v\n%s", err, out)
	}
	return bin
}

func startMeshProxy(b *testing.B, bin, mode string, port int, backends []int) {
	b.Helper()
	args := []string{"-port", strconv.Itoa(port), "-mode", mode}
	for _, p := range backends {
		args = append(args, "-backend", "127.0.0.1:"+strconv.Itoa(p))
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	startProcess(b, cmd, syscall.SIGTERM)
}

// startProcess starts cmd with its output on the benchmark's stderr and
// stops it with sig at cleanup (SIGKILL if it lingers).
func startProcess(b *testing.B, cmd *exec.Cmd, sig syscall.Signal) {
	b.Helper()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(sig)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// waitHTTP polls until port on 127.0.0.1 answers a GET with 200.
func waitHTTP(b *testing.B, port int) {
	b.Helper()
	waitURL(b, fmt.Sprintf("http://127.0.0.1:%d/", port))
}

// waitURL polls until url answers a GET with 200.
func waitURL(b *testing.B, url string) {
	b.Helper()
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	pollUntil(b, time.Now(), url+" answering 200", func(ctx context.Context) (bool, error) {
		resp, err := c.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	})
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in `)
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99      = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockErr  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk loads port with meshLoad and returns requests/s and the 99th
// percentile latency in ms. Responses other than 2xx fail the benchmark.
func runWrk(b *testing.B, port int) (rps, p99ms float64) {
	b.Helper()
	r := wrk(b, meshLoad, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if r.non2xx > 0 {
		b.Fatalf("wrk saw %d responses that were not 2xx:\n%s", r.non2xx, r.out)
	}
	if r.socketErrors > 0 {
		b.Logf("wrk: %s", wrkSockErr.FindString(r.out))
	}
	return r.rps, r.p99ms
}

// wrkResult is what one wrk run reported.
type wrkResult struct {
	requests     int     // completed, whatever their status
	rps          float64 // requests/s
	p99ms        float64 // 99th percentile latency (needs --latency)
	non2xx       int     // responses other than 2xx or 3xx
	socketErrors int     // connect, read, write and timeout errors
	out          string  // wrk's report
}

// failed is the requests that did not get a 2xx or 3xx answer.
func (r wrkResult) failed() int { return r.non2xx + r.socketErrors }

// wrk runs wrk with load (which must hold --latency) on url.
func wrk(b *testing.B, load []string, url string) wrkResult {
	b.Helper()
	args := append(slices.Clone(load), url)
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %v: %v\n%s", args, err, out)
	}
	return parseWrk(b, string(out))
}

func parseWrk(b *testing.B, out string) wrkResult {
	b.Helper()
	r := wrkResult{out: out}
	m := wrkRPS.FindStringSubmatch(out)
	l := wrkP99.FindStringSubmatch(out)
	n := wrkRequests.FindStringSubmatch(out)
	if m == nil || l == nil || n == nil {
		b.Fatalf("cannot find the requests, Requests/sec and the 99%% latency in wrk's output:\n%s", out)
	}
	r.requests, _ = strconv.Atoi(n[1])
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.p99ms, _ = strconv.ParseFloat(l[1], 64)
	switch l[2] {
	case "us":
		r.p99ms /= 1000
	case "s":
		r.p99ms *= 1000
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkSockErr.FindStringSubmatch(out); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.Atoi(v)
			r.socketErrors += n
		}
	}
	return r
}
