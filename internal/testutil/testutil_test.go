package testutil

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFreeIPIsUniqueAndInThisProcessBlock(t *testing.T) {
	seen := map[string]bool{}
	prefix := fmt.Sprintf("127.%d.", ipBlock())
	for range 20 {
		ip := FreeIP(t)
		if seen[ip] {
			t.Fatalf("FreeIP returned %s twice", ip)
		}
		seen[ip] = true
		if !strings.HasPrefix(ip, prefix) {
			t.Fatalf("FreeIP returned %s, want an address in %s0.0/16", ip, prefix)
		}
	}
}

func TestFreeIPSkipsAddressInUse(t *testing.T) {
	ips.Lock()
	k := ips.next
	ips.Unlock()
	taken := fmt.Sprintf("127.%d.%d.%d", ipBlock(), 1+(k/254)%254, 1+k%254)
	ln, err := net.Listen("tcp", net.JoinHostPort(taken, "2378"))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	if ip := FreeIP(t); ip == taken {
		t.Fatalf("FreeIP returned %s although its port 2378 is in use", ip)
	}
}

func TestEventuallyRetriesUntilNil(t *testing.T) {
	calls := 0
	Eventually(t, 10*time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("fn was called %d times, want 3", calls)
	}
}

// fatalRecorder records Fatalf and stops the goroutine like testing does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventuallyFailsWithLastError(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		Eventually(rec, 200*time.Millisecond, func() error {
			n++
			return fmt.Errorf("attempt %d failed", n)
		})
	}()
	<-done
	if !strings.Contains(rec.msg, "failed") || !strings.Contains(rec.msg, "attempt") {
		t.Fatalf("Fatalf message %q does not carry the last error", rec.msg)
	}
}

func TestBinaryIsBuiltOnce(t *testing.T) {
	a, b := Binary(t), Binary(t)
	if a != b {
		t.Fatalf("Binary returned %s, then %s", a, b)
	}
	out, err := Run(t, "--version")
	if err != nil {
		t.Fatalf("shoal --version: %v", err)
	}
	if !strings.Contains(out, "shoal") {
		t.Fatalf("shoal --version printed %q", out)
	}
}

// TestClusterLifecycle exercises the harness itself on the smallest cluster:
// start, leader, kill, restart, stop.
func TestClusterLifecycle(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 1, 1)
	m, w := c.Managers[0], c.Workers[0]
	if leader := c.Leader(t); leader != m {
		t.Fatalf("Leader returned %s, want %s", leader.Name, m.Name)
	}
	if m.ID(t) == w.ID(t) || m.ID(t) == "" {
		t.Fatalf("node IDs %q and %q: want two different IDs", m.ID(t), w.ID(t))
	}
	rows, err := m.NodeLs(t)
	if err != nil {
		t.Fatalf("node ls: %v", err)
	}
	if len(rows) != 2 {
		t.Fatalf("node ls lists %d nodes, want 2: %+v", len(rows), rows)
	}
	pid := w.PID()
	w.Kill(t)
	if w.Running() {
		t.Fatalf("%s still running after Kill", w.Name)
	}
	w.Restart(t)
	if w.PID() == pid || !w.Running() {
		t.Fatalf("Restart: pid %d (was %d), running %v", w.PID(), pid, w.Running())
	}
	c.WaitHealthy(t)
	w.Stop(t)
	if w.Running() {
		t.Fatalf("%s still running after Stop", w.Name)
	}
	if !strings.Contains(w.Log(t), "==== ") {
		t.Fatalf("the log of %s lacks the harness's start lines", w.Name)
	}
}
