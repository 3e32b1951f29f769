// Package process is the runtime that runs tasks as host processes. The image
// is recorded but never pulled; the task runs container.command followed by
// container.args.
//
// Each task runs under a shim, `shoal task-shim --dir DIR -- ARGV…` (RunShim),
// started detached in its own session with stdin on /dev/null, so that tasks
// survive agent restarts. The shim starts the command in its own process
// group with the task's environment, working directory and user, writes its
// output to DIR/log.jsonl (runtime/tasklog), and records:
//
//	DIR/config.json  what the runtime asks of the shim (env, workdir, user)
//	DIR/pid          the command's and the shim's PIDs and start times
//	DIR/exit.json    how the command ended (runtime.ExitStatus)
//	DIR/shim.log     the shim's own errors
//
// A PID is only trusted together with its start time (field 22 of
// /proc/PID/stat), so a recycled PID is never mistaken for the task.
//
// Not applied to processes: container.hostname (a process shares the host's
// UTS namespace), mounts, resource limits and published ports. Those need
// namespaces and cgroups, which the containerd runtime brings.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"shoal/internal/jsonfile"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// Files in a task's directory.
const (
	configFile  = "config.json"
	pidFile     = "pid"
	exitFile    = "exit.json"
	shimLogFile = "shim.log"
	logFile     = "log.jsonl"
)

// startTimeout bounds how long Start waits for the shim to report the
// command's PID when ctx has no deadline of its own.
const startTimeout = 30 * time.Second

// Config configures the process runtime.
type Config struct {
	// Dir holds one directory per task, named by task ID
	// (<data-dir>/tasks).
	Dir string
	// Shim is the shoal binary that provides `task-shim`; default: the
	// running executable.
	Shim   string
	Logger *slog.Logger
}

// Runtime runs tasks as host processes. It keeps no state in memory: all of
// it is in the task directories, so any number of agents over time see the
// same tasks.
type Runtime struct {
	dir  string
	shim string
	log  *slog.Logger
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a process runtime. It fails if the shim binary cannot be found.
func New(cfg Config) (*Runtime, error) {
	if cfg.Dir == "" {
		return nil, errors.New("process runtime: Config.Dir is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Shim == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("process runtime: find the shoal binary for task-shim: %w", err)
		}
		cfg.Shim = exe
	}
	return &Runtime{dir: cfg.Dir, shim: cfg.Shim, log: cfg.Logger.With("component", "runtime", "runtime", "process")}, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return "process" }

// LogPath implements runtime.Runtime.
func (r *Runtime) LogPath(taskID string) string { return filepath.Join(r.taskDir(taskID), logFile) }

func (r *Runtime) taskDir(taskID string) string { return filepath.Join(r.dir, taskID) }

// Prepare checks that the task can run here and creates its directory.
func (r *Runtime) Prepare(_ context.Context, t *shoalpb.Task) error {
	if err := validID(t.GetId()); err != nil {
		return err
	}
	if _, err := specOf(t); err != nil {
		return err
	}
	return os.MkdirAll(r.taskDir(t.Id), 0o750)
}

// Start starts the task's shim and returns once the shim reports the
// command's PID, or the reason it could not start it.
func (r *Runtime) Start(ctx context.Context, t *shoalpb.Task) (runtime.Handle, error) {
	if err := validID(t.GetId()); err != nil {
		return nil, err
	}
	spec, err := specOf(t)
	if err != nil {
		return nil, err
	}
	dir := r.taskDir(t.Id)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	// A previous attempt by an agent that stopped while starting may have
	// left a live shim: that one runs the task, not a second.
	if lockHeld(dir) {
		if info, ok := awaitPID(ctx, dir); ok {
			return &handle{dir: dir, info: info}, nil
		}
		return nil, fmt.Errorf("start task: a task-shim started earlier for task %s still runs but reported no PID", t.Id)
	}
	// A previous attempt may have left its files; this start replaces them.
	// Logs are appended to.
	for _, name := range []string{pidFile, exitFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	if err := jsonfile.Write(filepath.Join(dir, configFile), spec.config, 0o600); err != nil {
		return nil, err
	}
	shimLog, err := os.OpenFile(filepath.Join(dir, shimLogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	defer shimLog.Close()

	cmd := exec.Command(r.shim, append([]string{"task-shim", "--dir", dir, "--"}, spec.argv...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + defaultPath}
	cmd.Stdout, cmd.Stderr = shimLog, shimLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start task-shim %s: %w", r.shim, err)
	}
	shimExited := make(chan struct{})
	go func() {
		// Reap the shim while this agent lives; after a restart init does.
		_ = cmd.Wait()
		close(shimExited)
	}()

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	h, err := r.awaitStart(ctx, dir, shimExited)
	if err != nil {
		// Whatever the shim managed to start must not run unobserved.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if info, ok := readPID(dir); ok {
			killGroup(info, syscall.SIGKILL)
		}
		return nil, err
	}
	r.log.Debug("task started", "task", t.Id, "pid", h.info.PID)
	return h, nil
}

// awaitStart polls the task directory until the shim has written the pid
// file (started) or an exit file without one (could not start).
func (r *Runtime) awaitStart(ctx context.Context, dir string, shimExited <-chan struct{}) (*handle, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if info, ok := readPID(dir); ok {
			return &handle{dir: dir, info: info}, nil
		}
		if st, ok := readExit(dir); ok {
			return nil, fmt.Errorf("start task: %s", st.Err)
		}
		select {
		case <-shimExited:
			if info, ok := readPID(dir); ok {
				return &handle{dir: dir, info: info}, nil
			}
			if st, ok := readExit(dir); ok {
				return nil, fmt.Errorf("start task: %s", st.Err)
			}
			return nil, fmt.Errorf("task-shim exited without starting the task: %s", tailOf(filepath.Join(dir, shimLogFile)))
		case <-ctx.Done():
			return nil, fmt.Errorf("task-shim did not report the task's PID: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Adopt finds a task started by an earlier agent. The task directory is the
// authority; state only cross-checks it.
func (r *Runtime) Adopt(ctx context.Context, taskID string, state []byte) (runtime.Handle, error) {
	if err := validID(taskID); err != nil {
		return nil, err
	}
	dir := r.taskDir(taskID)
	info, ok := readPID(dir)
	if !ok && lockHeld(dir) {
		// Started by an agent that stopped before the shim wrote its PID.
		info, ok = awaitPID(ctx, dir)
	}
	if !ok {
		if _, exited := readExit(dir); exited {
			return nil, fmt.Errorf("%w: task %s never started (its shim recorded a start failure)", runtime.ErrGone, taskID)
		}
		return nil, fmt.Errorf("%w: no process was started for task %s", runtime.ErrGone, taskID)
	}
	if len(state) > 0 {
		var saved procInfo
		if err := decodeState(state, &saved); err == nil && saved.PID != 0 && (saved.PID != info.PID || saved.Start != info.Start) {
			return nil, fmt.Errorf("%w: task %s was restarted by someone else (pid %d, expected %d)", runtime.ErrGone, taskID, info.PID, saved.PID)
		}
	}
	return &handle{dir: dir, info: info}, nil
}

// Remove kills whatever is left of the task and deletes its directory.
func (r *Runtime) Remove(ctx context.Context, taskID string) error {
	if err := validID(taskID); err != nil {
		return err
	}
	dir := r.taskDir(taskID)
	info, ok := readPID(dir)
	if !ok && lockHeld(dir) {
		info, ok = awaitPID(ctx, dir)
	}
	if ok {
		// Kill the task, then its shim, and wait for the shim to be gone so
		// that it writes nothing into the directory being deleted.
		shimAlive := alive(info.ShimPID, info.ShimStart)
		if _, exited := readExit(dir); !exited {
			killGroup(info, syscall.SIGKILL)
		}
		if shimAlive {
			_ = syscall.Kill(info.ShimPID, syscall.SIGKILL)
			deadline := time.Now().Add(5 * time.Second)
			for alive(info.ShimPID, info.ShimStart) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove task %s: %w", taskID, err)
	}
	return nil
}

// validID refuses IDs that would escape the runtime's directory.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || filepath.Base(id) != id {
		return fmt.Errorf("%w: task ID %q cannot name a directory", runtime.ErrInvalidSpec, id)
	}
	return nil
}
