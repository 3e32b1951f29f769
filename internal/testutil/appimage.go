package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"shoal/internal/imagetar"
)

// AppImageName is the name AppImage's image is loaded as.
const AppImageName = "shoal-test-app:v1"

var appImage struct {
	once sync.Once
	tar  []byte
	err  error
}

// AppImage returns the docker-archive tar of the containerd runtime's test
// program (worker/runtime/containerd/testdata/app: one static binary whose
// first argument picks what it does — sleep, alloc MiB, echo CODE, …),
// named AppImageName, built once per test process. Its default command is
// `hello`, its HEALTHCHECK runs `/app hello`.
func AppImage(tb testing.TB) []byte {
	tb.Helper()
	appImage.once.Do(func() { appImage.tar, appImage.err = buildAppImage() })
	if appImage.err != nil {
		tb.Fatal(appImage.err)
	}
	return appImage.tar
}

// AppImageFile writes AppImage to a file of the test's and returns its path,
// for `shoal image load -i`.
func AppImageFile(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "shoal-test-app.tar")
	if err := os.WriteFile(path, AppImage(tb), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func buildAppImage() ([]byte, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "shoal-test-app-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "app")
	cmd := exec.Command("go", "build", "-o", bin, "./worker/runtime/containerd/testdata/app")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the test app: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = imagetar.Write(&buf, imagetar.Image{
		Name:       AppImageName,
		Files:      []imagetar.File{{Path: "app", Mode: 0o755, Data: data}},
		Dirs:       []string{"tmp", "data", "etc"},
		Entrypoint: []string{"/app"},
		Cmd:        []string{"hello"},
		Env:        []string{"FROM_IMAGE=yes", "SHARED=image"},
		WorkingDir: "/tmp",
		StopSignal: "SIGTERM",
		// A 5 s timeout: an exec (runc exec) on a 2-core machine running
		// the whole suite has taken over a second, and a check that times
		// out 4 times replaces the task under a test.
		Healthcheck: &imagetar.Healthcheck{
			Test: []string{"CMD", "/app", "hello"}, Interval: 2 * time.Second, Timeout: 5 * time.Second, Retries: 4,
		},
	})
	return buf.Bytes(), err
}
