package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	"shoal/worker/runtime"
)

// Exec runs a command with the task's env and working dir, reports its exit
// code and returns its combined output truncated to runtime.MaxExecOutput.
func TestExecRunsInTheTasksEnvironment(t *testing.T) {
	r := newRuntime(t)
	wd := t.TempDir()
	task := newTask("t", "sleep", "60")
	task.Spec.Container.Env = []string{"GREETING=hello"}
	task.Spec.Container.Workdir = wd
	h := start(t, r, task)
	t.Cleanup(func() { _ = h.Stop(context.Background(), "SIGKILL", 0) })
	ex, ok := h.(runtime.Execer)
	if !ok {
		t.Fatal("the process runtime's Handle does not implement runtime.Execer")
	}
	cases := []struct {
		argv     []string
		code     int
		output   string
		truncate bool
	}{
		{[]string{"sh", "-c", `echo "$GREETING in $(pwd)"; echo err >&2`}, 0, "hello in " + wd + "\nerr\n", false},
		{[]string{"sh", "-c", "echo failing; exit 3"}, 3, "failing\n", false},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15, "", false},
		{[]string{"sh", "-c", "head -c 10000 /dev/zero"}, 0, "", true},
	}
	for _, c := range cases {
		code, out, err := ex.Exec(ctxT(t), c.argv)
		if err != nil {
			t.Fatalf("Exec %q: %v", c.argv, err)
		}
		if code != c.code {
			t.Fatalf("Exec %q: code %d, want %d (output %q)", c.argv, code, c.code, out)
		}
		if c.truncate {
			if len(out) != runtime.MaxExecOutput {
				t.Fatalf("Exec %q: %d bytes of output, want it truncated to %d", c.argv, len(out), runtime.MaxExecOutput)
			}
		} else if string(out) != c.output {
			t.Fatalf("Exec %q: output %q, want %q", c.argv, out, c.output)
		}
	}
	// What a command leaves in the background ends with it.
	pidFile := filepath.Join(t.TempDir(), "bg")
	if code, out, err := ex.Exec(ctxT(t), []string{"sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > " + pidFile}); err != nil || code != 0 {
		t.Fatalf("Exec with a background process: code %d, %q, %v", code, out, err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	bg, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, testTimeout, func() error {
		if state, _, err := procStat(bg); err == nil && state != 'Z' && state != 'X' {
			return fmt.Errorf("process %d, started in the background by a command, still runs", bg)
		}
		return nil
	})
	if _, _, err := ex.Exec(ctxT(t), []string{"no-such-program-shoal"}); err == nil || !strings.Contains(err.Error(), "no-such-program-shoal") {
		t.Fatalf("Exec of a missing program: err %v, want one naming it", err)
	}
}

// A command still running when ctx ends is killed with its children, and
// Exec returns ctx's error.
func TestExecStopsWithItsContext(t *testing.T) {
	r := newRuntime(t)
	h := start(t, r, newTask("t", "sleep", "60"))
	t.Cleanup(func() { _ = h.Stop(context.Background(), "SIGKILL", 0) })
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() {
		_, _, err := h.(runtime.Execer).Exec(ctx, []string{"sh", "-c", "sleep 60 & wait"})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Exec after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Exec did not return after its context ended")
	}
}
