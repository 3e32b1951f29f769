package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cliTimeout bounds one CLI call. It is above the longest wait of the CLI
// itself: an API call gives up after 30 s, and a command that waits for
// convergence (service create, stack deploy) after its --timeout, 2 m by
// default; a slow CI machine must see the CLI's own error, not this one.
const cliTimeout = 3 * time.Minute

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of a shoal binary built from this module's
// ./cmd/shoal, building it on the first call of the test process. The binary
// is built without -race whatever the test process uses, so daemons run at
// full speed. SHOAL_TEST_BINARY overrides the build.
func Binary(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		if p := os.Getenv("SHOAL_TEST_BINARY"); p != "" {
			build.path, build.err = filepath.Abs(p)
			return
		}
		build.path, build.err = buildBinary()
	})
	if build.err != nil {
		tb.Fatalf("build shoal: %v", build.err)
	}
	return build.path
}

// binDirPrefix names the temporary build directories; the pid in the name
// lets a later test process remove those whose process is gone.
const binDirPrefix = "shoal-testbin-"

func buildBinary() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	removeStaleBuilds()
	dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "shoal")
	cmd := exec.Command("go", "build", "-o", path, "./cmd/shoal")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/shoal in %s: %w\n%s", cmd.Dir, err, stderr.String())
	}
	return path, nil
}

// moduleRoot is the directory of shoal's go.mod, where builds run.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// removeStaleBuilds deletes binaries built by test processes that have
// exited; a test process cannot remove its own on exit.
func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), binDirPrefix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// Run runs `shoal args...` to completion (for commands that are expected to
// exit, such as a join that must be refused) and returns its stdout; a
// non-zero exit is a *CLIError that carries stderr.
func Run(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	return run(Binary(tb), args)
}

func run(bin string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within %s: %w", cliTimeout, ctx.Err())
	}
	if err != nil {
		return stdout.String(), &CLIError{Args: args, Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.String(), nil
}

// CLIError is a shoal command that exited with an error (or hung).
type CLIError struct {
	Args   []string
	Err    error  // the exit status, or the timeout
	Stderr string // what the command printed on stderr, trimmed
}

func (e *CLIError) Error() string {
	return fmt.Sprintf("shoal %s: %v: %s", strings.Join(e.Args, " "), e.Err, e.Stderr)
}

func (e *CLIError) Unwrap() error { return e.Err }

// childEnv is the test's environment without the variables that would point
// the CLI at another daemon or certificate.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SHOAL_HOST=") || strings.HasPrefix(kv, "SHOAL_CERT_PATH=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
