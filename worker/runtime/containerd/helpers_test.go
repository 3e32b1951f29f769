package containerd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
	"shoal/worker/runtime/tasklog"
)

// testTimeout bounds every wait of a test.
const testTimeout = 60 * time.Second

// testImage is the name the test image is loaded as.
const testImage = testutil.AppImageName

// TestMain lets the test binary be the task-logger the shims start, as the
// shoal binary is in production.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "task-logger" {
		if err := RunTaskLogger(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// appImage is the test program's image (testutil.AppImage) named name.
func appImage(t testing.TB, name string) []byte {
	t.Helper()
	tar := testutil.AppImage(t)
	if name == testImage {
		return tar
	}
	// Another name for the same files: rewrite the tag in manifest.json.
	return bytes.Replace(tar, []byte(`"`+testImage+`"`), []byte(`"`+name+`"`), 1)
}

// newRuntime starts a Runtime with its own containerd in a temporary data
// dir; the test's cleanup purges and stops it.
func newRuntime(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	testutil.RequireRoot(t, "containerd", "runc")
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Logger = testBinary(t)
	if cfg.PullTimeout == 0 {
		cfg.PullTimeout = 2 * time.Second
	}
	r, err := New(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	dataDir := cfg.DataDir
	t.Cleanup(func() {
		_ = r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := Purge(ctx, dataDir); err != nil {
			t.Errorf("Purge: %v", err)
		}
	})
	return r
}

func testBinary(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// loadApp imports the test image into r.
func loadApp(t testing.TB, r *Runtime) {
	t.Helper()
	if _, err := r.Import(ctxT(t), bytes.NewReader(appImage(t, testImage))); err != nil {
		t.Fatalf("Import: %v", err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newTask(id string, args ...string) *shoalpb.Task {
	return &shoalpb.Task{Id: id, ServiceName: "svc", Slot: 1, Spec: &shoalpb.TaskSpec{
		Container: &shoalpb.ContainerSpec{Image: testImage, Args: args},
	}}
}

// start prepares and starts task; the test's cleanup removes it.
func start(t testing.TB, r *Runtime, task *shoalpb.Task) runtime.Handle {
	t.Helper()
	ctx := ctxT(t)
	if err := r.Prepare(ctx, task); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	h, err := r.Start(ctx, task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = r.Remove(context.Background(), task.Id) })
	return h
}

func wait(t testing.TB, h runtime.Handle) runtime.ExitStatus {
	t.Helper()
	st, err := h.Wait(ctxT(t))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return st
}

// logLines reads the task's whole log as "stream: line" strings.
func logLines(t testing.TB, r *Runtime, id string) []string {
	t.Helper()
	var lines []string
	err := tasklog.Read(ctxT(t), r.LogPath(id), tasklog.ReadOptions{Tail: -1}, func(e tasklog.Entry) error {
		lines = append(lines, e.Stream+": "+string(e.Line))
		return nil
	})
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	return lines
}

// waitLog polls the task's log until a line contains want.
func waitLog(t testing.TB, r *Runtime, id, want string) {
	t.Helper()
	testutil.Eventually(t, testTimeout, func() error {
		lines := logLines(t, r, id)
		for _, l := range lines {
			if strings.Contains(l, want) {
				return nil
			}
		}
		return fmt.Errorf("log of %s has no %q: %q", id, want, lines)
	})
}
