package containerd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// notInstalled is the error New returns when it must start containerd and
// cannot find it.
const notInstalled = "containerd is not installed: apt-get install containerd runc, or pass --containerd-address"

// readyTimeout bounds how long New waits for a containerd it started to
// answer on its socket.
const readyTimeout = 30 * time.Second

// daemonConfig is the config.toml of the containerd shoal starts: its own
// root, state and sockets, so it never touches a containerd of the host, and
// no CRI plugin (shoal is its only client).
const daemonConfig = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`

// paths are the files under DataDir/containerd.
type paths struct {
	base string
}

func (p paths) config() string    { return filepath.Join(p.base, "config.toml") }
func (p paths) root() string      { return filepath.Join(p.base, "root") }
func (p paths) state() string     { return filepath.Join(p.base, "state") }
func (p paths) socket() string    { return filepath.Join(p.base, "ctrd.sock") }
func (p paths) runc() string      { return filepath.Join(p.base, "runc") }
func (p paths) tasks() string     { return filepath.Join(p.base, "tasks") }
func (p paths) fifos() string     { return filepath.Join(p.base, "fifo") }
func (p paths) daemonLog() string { return filepath.Join(p.base, "containerd.log") }

// daemon supervises the containerd child: it starts it, restarts it when it
// exits while the runtime is open, and stops it on close. The child gets
// SIGTERM if the agent dies (Pdeathsig); the runc shims it started are not
// its children and keep the containers running.
type daemon struct {
	p   paths
	log *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	closing bool
	stopped chan struct{} // closed when the supervisor has returned
}

// CheckInstalled says what to do when the containerd binary the runtime
// starts (without Config.Address) is missing.
func CheckInstalled() error {
	if _, err := exec.LookPath("containerd"); err != nil {
		return errors.New(notInstalled)
	}
	return nil
}

// startDaemon writes the config, starts containerd and returns once the
// supervisor runs it (not yet once it answers; see waitServing).
func startDaemon(p paths, log *slog.Logger) (*daemon, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, errors.New(notInstalled)
	}
	for _, dir := range []string{p.base, p.root(), p.state(), p.runc()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("containerd runtime: %w", err)
		}
	}
	cfg := fmt.Sprintf(daemonConfig, p.root(), p.state(), p.socket(), p.socket()+".ttrpc")
	if err := os.WriteFile(p.config(), []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("containerd runtime: write %s: %w", p.config(), err)
	}
	d := &daemon{p: p, log: log, stopped: make(chan struct{})}
	started := make(chan error, 1)
	go d.supervise(bin, started)
	if err := <-started; err != nil {
		return nil, err
	}
	return d, nil
}

// supervise runs containerd until close, restarting it when it exits. It
// keeps its OS thread locked for its whole life: Pdeathsig fires when the
// thread that forked the child exits, not the process, so that thread must
// live as long as the supervision does.
func (d *daemon) supervise(bin string, started chan<- error) {
	goruntime.LockOSThread()
	defer close(d.stopped)
	first := true
	backoff := 100 * time.Millisecond
	for {
		logf, err := os.OpenFile(d.p.daemonLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			if first {
				started <- fmt.Errorf("containerd runtime: %w", err)
				return
			}
			logf = nil
		}
		cmd := exec.Command(bin, "--config", d.p.config())
		cmd.Dir = "/"
		if logf != nil {
			cmd.Stdout, cmd.Stderr = logf, logf
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		d.mu.Lock()
		if d.closing {
			d.mu.Unlock()
			if logf != nil {
				logf.Close()
			}
			return
		}
		err = cmd.Start()
		if err == nil {
			d.cmd = cmd
		}
		d.mu.Unlock()
		if first {
			started <- err
			first = false
			if err != nil {
				if logf != nil {
					logf.Close()
				}
				return
			}
		}
		if err == nil {
			began := time.Now()
			err = cmd.Wait()
			if time.Since(began) > time.Minute {
				backoff = 100 * time.Millisecond
			}
		}
		if logf != nil {
			logf.Close()
		}
		d.mu.Lock()
		d.cmd = nil
		closing := d.closing
		d.mu.Unlock()
		if closing {
			return
		}
		d.log.Warn("containerd exited; restarting it", "err", err, "log", d.p.daemonLog())
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

// close stops containerd (SIGTERM, then SIGKILL after 10 s) and waits for
// the supervisor to return. Containers keep running under their shims.
func (d *daemon) close() {
	d.mu.Lock()
	d.closing = true
	cmd := d.cmd
	d.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-d.stopped:
	case <-time.After(10 * time.Second):
		if cmd != nil {
			_ = cmd.Process.Kill()
		}
		<-d.stopped
	}
}

// kill stops containerd abruptly without closing the daemon, so that the
// supervisor restarts it (for tests of the restart path).
func (d *daemon) kill() {
	d.mu.Lock()
	cmd := d.cmd
	d.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
	}
}

// waitServing polls the socket until containerd answers or ctx/readyTimeout
// ends.
func waitServing(ctx context.Context, c *client.Client, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := c.IsServing(ctx)
		if ok && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd did not answer within %s (see %s): %w", readyTimeout, logPath, ctx.Err())
		case <-tick.C:
		}
	}
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return "(empty)"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = s[len(s)-600:]
	}
	return s
}

// serving reports whether a containerd answers on the socket at addr now.
func serving(ctx context.Context, addr string) bool {
	if _, err := os.Stat(addr); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := client.New(addr, client.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	return ok && err == nil
}

// UnmountUnder lazily unmounts every mount below dir, deepest first, so that
// nothing of a purged data dir stays mounted.
func UnmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &n); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
