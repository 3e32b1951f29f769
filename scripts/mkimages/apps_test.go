package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testutil"
)

// testVersion is the version the apps under test are built with.
const testVersion = "vtest"

var built struct {
	once sync.Once
	dir  string
	err  error
}

// binary returns the path of app built as the images build it.
func binary(t *testing.T, app string) string {
	t.Helper()
	built.once.Do(func() {
		root, _, err := goEnv(context.Background())
		if err != nil {
			built.err = err
			return
		}
		built.dir, built.err = os.MkdirTemp("", "mkimages-test-")
		if built.err == nil {
			built.err = BuildBinaries(context.Background(), root, testVersion, built.dir)
		}
	})
	if built.err != nil {
		t.Fatalf("build the apps: %v", built.err)
	}
	return filepath.Join(built.dir, app)
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{built.dir, shared.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// proc is one app process running on a loopback address.
type proc struct {
	URL  string // http://ip:port
	IP   string
	Port string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// freeAddr is an unused loopback IP of this test process and a free port on it.
func freeAddr(t *testing.T) (ip, port string) {
	t.Helper()
	ip = testutil.FreeIP(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return ip, port
}

// start runs app on ip:port with env and waits until its /healthz answers.
// The process is stopped at the end of the test.
func start(t *testing.T, app, ip, port string, env ...string) *proc {
	t.Helper()
	p := &proc{URL: "http://" + net.JoinHostPort(ip, port), IP: ip, Port: port, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary(t, app))
	p.cmd.Env = append([]string{"PORT=" + port, "LISTEN_IP=" + ip, "PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", app, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s on %s:\n%s", app, p.URL, p.out.String())
		}
	})
	testutil.Eventually(t, 20*time.Second, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v\n%s", app, p.cmd.ProcessState, p.out.String())
		default:
		}
		resp, err := http.Get(p.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /healthz: %s", app, resp.Status)
		}
		return nil
	})
	return p
}

// stop sends SIGTERM, waits for the exit and returns the exit code; a
// process that ignores SIGTERM is killed after 10 s.
func (p *proc) stop() int {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.cmd.ProcessState.ExitCode()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// call does one request and returns the status and body; user "" sends no
// credentials.
func call(t *testing.T, method, url, body, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// must is call that fails the test unless the status is want; it decodes a
// JSON body into v when v is not nil.
func must(t *testing.T, want int, method, url, body, user, password string, v any) string {
	t.Helper()
	code, got := call(t, method, url, body, user, password)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d; body %q", method, url, code, want, got)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(got), v); err != nil {
			t.Fatalf("%s %s: body %q is not the JSON expected: %v", method, url, got, err)
		}
	}
	return got
}

// runExit runs app to completion with env and returns its exit code and
// output; a run that lasts over 20 s fails the test.
func runExit(t *testing.T, app string, args []string, env ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t, app), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not exit within 20 s:\n%s", app, args, out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s: %v", app, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}
