package process

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"shoal/internal/jsonfile"
	"shoal/worker/runtime"
)

// execKillDelay is how long Exec waits for a command's group to end after
// killing it when ctx ended, before giving up on its output pipes.
const execKillDelay = 2 * time.Second

var _ runtime.Execer = (*handle)(nil)

// Exec runs argv as the task runs its command: on the host, with the task's
// environment, working directory and user (read from the task directory, so
// it works the same for adopted tasks), in a process group of its own that
// is killed when ctx ends. code is the command's exit code (128+N when
// signal N killed it); err is set only when the command could not run or
// ctx ended.
func (h *handle) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	if len(argv) == 0 || argv[0] == "" {
		return -1, nil, fmt.Errorf("%w: exec needs a command", runtime.ErrInvalidSpec)
	}
	var cfg shimConfig
	if jsonfile.Read(filepath.Join(h.dir, configFile), &cfg) != nil {
		return -1, nil, fmt.Errorf("exec in task: read %s: %w", filepath.Join(h.dir, configFile), runtime.ErrGone)
	}
	path, err := lookPath(argv[0], cfg.Env)
	if err != nil {
		return -1, nil, fmt.Errorf("exec in task: %w", err)
	}
	out := &runtime.ExecOutput{}
	cmd := exec.CommandContext(ctx, path)
	cmd.Args = argv
	cmd.Env, cmd.Dir = cfg.Env, cfg.Workdir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u := cfg.User; u != nil && syscall.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	// Kill the whole group, not only argv[0]: a shell's children would
	// otherwise keep running and hold the output pipe open.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execKillDelay
	err = cmd.Run()
	if cmd.Process != nil {
		// What the command left in the background must not outlive it; the
		// group's ID cannot be reused while any member is left.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		return -1, out.Bytes(), ctx.Err()
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), out.Bytes(), nil
		}
		return exitErr.ExitCode(), out.Bytes(), nil
	case err != nil:
		return -1, out.Bytes(), fmt.Errorf("exec in task: %w", err)
	}
	return 0, out.Bytes(), nil
}
