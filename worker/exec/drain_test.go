package exec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// scriptedCounter reports its counts in turn, then err, or the last count
// again without one.
type scriptedCounter struct {
	mu     sync.Mutex
	counts []int
	next   int
	err    error
}

func (s *scriptedCounter) InboundConns(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.next < len(s.counts):
		s.next++
		return s.counts[s.next-1], nil
	case s.err != nil:
		return 0, s.err
	}
	return s.counts[len(s.counts)-1], nil
}

// startDrain runs drainConns on clk; the result arrives on the channel.
func startDrain(ctx context.Context, clk *fakeClock, counter *scriptedCounter, grace time.Duration) <-chan drained {
	out := make(chan drained, 1)
	go func() { out <- drainConns(ctx, clk, counter, grace) }()
	return out
}

// tick lets the drain count again: it waits until the drain waits on its
// deadline and its next count, then moves the clock to that count.
func tick(t *testing.T, clk *fakeClock) {
	t.Helper()
	clk.awaitWaiters(t, 2)
	clk.Advance(drainPoll)
}

func result(t *testing.T, out <-chan drained) drained {
	t.Helper()
	select {
	case d := <-out:
		return d
	case <-time.After(testTimeout):
		t.Fatal("the drain did not end")
		return drained{}
	}
}

func TestDrainWaitsUntilTheConnectionsEnd(t *testing.T) {
	clk := newFakeClock()
	out := startDrain(t.Context(), clk, &scriptedCounter{counts: []int{3, 2, 0}}, 10*time.Second)
	tick(t, clk)
	tick(t, clk)
	d := result(t, out)
	if d != (drained{open: 3, took: 2 * drainPoll}) {
		t.Fatalf("drained %+v, want 3 open, none left, after 2 polls", d)
	}
}

func TestDrainEndsWhenTheGracePeriodPasses(t *testing.T) {
	clk := newFakeClock()
	out := startDrain(t.Context(), clk, &scriptedCounter{counts: []int{2}}, 3*drainPoll)
	for range 3 {
		tick(t, clk)
	}
	d := result(t, out)
	if d != (drained{open: 2, left: 2, took: 3 * drainPoll}) {
		t.Fatalf("drained %+v, want 2 open and 2 left after the grace period", d)
	}
}

// A task without connections is stopped at once: no wait on the clock.
func TestDrainWithoutConnectionsDoesNotWait(t *testing.T) {
	clk := newFakeClock()
	d := result(t, startDrain(t.Context(), clk, &scriptedCounter{counts: []int{0}}, time.Minute))
	if d != (drained{}) {
		t.Fatalf("drained %+v, want nothing", d)
	}
	clk.mu.Lock()
	defer clk.mu.Unlock()
	if len(clk.waiters) != 0 {
		t.Fatalf("%d waiters left on the clock", len(clk.waiters))
	}
}

func TestDrainEndsWhenCountingFails(t *testing.T) {
	clk := newFakeClock()
	gone := errors.New("no such process")
	out := startDrain(t.Context(), clk, &scriptedCounter{counts: []int{1}, err: gone}, time.Minute)
	tick(t, clk)
	d := result(t, out)
	if !errors.Is(d.err, gone) || d.open != 1 || d.left != 1 {
		t.Fatalf("drained %+v, want 1 open and the count's error", d)
	}
}

func TestDrainEndsWithItsContext(t *testing.T) {
	clk := newFakeClock()
	ctx, cancel := context.WithCancel(t.Context())
	out := startDrain(ctx, clk, &scriptedCounter{counts: []int{1}}, time.Minute)
	clk.awaitWaiters(t, 2)
	cancel()
	if d := result(t, out); !errors.Is(d.err, context.Canceled) {
		t.Fatalf("drained %+v, want context.Canceled", d)
	}
}

// A stopping task whose client holds a connection gets its stop signal
// only once the client has closed it (process runtime: the task's own
// sockets in the host's network).
func TestStopDrainsConnectionsBeforeTheSignal(t *testing.T) {
	clk := newFakeClock()
	n := startNodeWithClock(t, "", clk)
	dir := t.TempDir()
	portFile, signalFile := filepath.Join(dir, "port"), filepath.Join(dir, "signal")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	task := newTask("web", exe)
	task.Spec.Container.Env = []string{listenTaskEnv + "=1", "PORT_FILE=" + portFile, "SIGNAL_FILE=" + signalFile}
	task.Spec.Container.StopGracePeriodMs = 60_000 // longer than the test's clock ever moves
	n.e.Assign(fullSet(task))
	n.awaitState("web", running)
	var port []byte
	testutil.Eventually(t, testTimeout, func() error {
		port, err = os.ReadFile(portFile)
		return err
	})
	conn, err := net.Dial("tcp", "127.0.0.1:"+string(port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	n.e.Assign(incrementOf(withDesired(task, shoalpb.TaskState_TASK_STATE_SHUTDOWN)))
	// The drain has counted the connection and waits to count again.
	clk.awaitWaiters(t, 2)
	if _, err := os.Stat(signalFile); err == nil {
		t.Fatal("the task got its stop signal while a client's connection was open")
	}
	n.mu.Lock()
	st := n.latest["web"]
	n.mu.Unlock()
	if st.GetState() != running {
		t.Fatalf("state %s while draining, want RUNNING", st.GetState())
	}

	conn.Close()
	testutil.Eventually(t, testTimeout, func() error {
		clk.Advance(drainPoll)
		n.mu.Lock()
		st := n.latest["web"]
		n.mu.Unlock()
		if st.GetState() != shutdown {
			return fmt.Errorf("state %s, want SHUTDOWN", st.GetState())
		}
		return nil
	})
	if b, err := os.ReadFile(signalFile); err != nil || strings.TrimSpace(string(b)) != "TERM" {
		t.Fatalf("the task's record of its stop signal: %q, %v", b, err)
	}
}
