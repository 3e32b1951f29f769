package process

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"shoal/internal/jsonfile"
	"shoal/worker/runtime"
	"shoal/worker/runtime/tasklog"
)

// drainTimeout bounds how long the shim reads output after the command has
// exited and its group has been killed: a process that left the group may
// hold the pipes open forever.
const drainTimeout = 2 * time.Second

// RunShim is `shoal task-shim --dir DIR -- ARGV…`: it runs argv as the task
// described by DIR/config.json and returns once the command has ended and
// DIR/exit.json is written. It forwards SIGTERM, SIGINT, SIGHUP and SIGQUIT
// to the command's process group rather than dying of them. When the command
// exits, whatever is left in its process group is killed, as a container's
// processes die with its init.
func RunShim(dir string, argv []string) error {
	if dir == "" || len(argv) == 0 {
		return errors.New("task-shim: --dir and a command are required")
	}
	var cfg shimConfig
	if b, err := os.ReadFile(filepath.Join(dir, configFile)); err != nil {
		return fmt.Errorf("task-shim: %w", err)
	} else if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("task-shim: %s: %w", configFile, err)
	}
	lock, ok, err := lockTask(dir)
	if err != nil {
		return fmt.Errorf("task-shim: %w", err)
	}
	if !ok {
		return errors.New("task-shim: another shim already runs this task")
	}
	// Released when the shim exits, after exit.json is written.
	defer lock.Close()
	logs, err := tasklog.NewWriter(filepath.Join(dir, logFile), 0, 0)
	if err != nil {
		return fmt.Errorf("task-shim: %w", err)
	}
	defer logs.Close()

	// Caught (not ignored) so that the command starts with default handlers.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)

	cmd, outR, errR, err := startCommand(cfg, argv)
	if err != nil {
		st := runtime.ExitStatus{Code: 126, Err: err.Error(), At: time.Now()}
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			st.Code = 127
		}
		return jsonfile.Write(filepath.Join(dir, exitFile), st, 0o600)
	}
	pid := cmd.Process.Pid
	info := procInfo{PID: pid, ShimPID: os.Getpid()}
	_, info.Start, _ = procStat(pid)
	_, info.ShimStart, _ = procStat(os.Getpid())
	if err := jsonfile.Write(filepath.Join(dir, pidFile), info, 0o600); err != nil {
		// Without a pid file nobody can find the task: do not run it blind.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return fmt.Errorf("task-shim: %w", err)
	}

	copied := make(chan struct{}, 2)
	go copyLines(outR, tasklog.Stdout, logs, copied)
	go copyLines(errR, tasklog.Stderr, logs, copied)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
wait:
	for {
		select {
		case sig := <-signals:
			_ = syscall.Kill(-pid, sig.(syscall.Signal))
		case waitErr = <-exited:
			break wait
		}
	}
	st := exitStatus(cmd.ProcessState, waitErr)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	drain := time.After(drainTimeout)
	for pending := 2; pending > 0; {
		select {
		case <-copied:
			pending--
		case <-drain:
			pending = 0
		}
	}
	st.At = time.Now()
	return jsonfile.Write(filepath.Join(dir, exitFile), st, 0o600)
}

// startCommand starts argv in its own process group with its output on
// pipes, resolving argv[0] with the task's PATH rather than the shim's.
func startCommand(cfg shimConfig, argv []string) (*exec.Cmd, *os.File, *os.File, error) {
	path, err := lookPath(argv[0], cfg.Env)
	if err != nil {
		return nil, nil, nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, err
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        argv,
		Env:         cfg.Env,
		Dir:         cfg.Workdir,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if u := cfg.User; u != nil && os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	err = cmd.Start()
	// The child has its copies; the shim's must go so EOF comes when the
	// task's processes close theirs.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, nil, nil, fmt.Errorf("start %q: %w", argv[0], err)
	}
	return cmd, outR, errR, nil
}

// lookPath finds name like a shell would with the task's PATH; a name with
// a slash is used as it is (relative to the working directory).
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathEnv := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w in PATH %s", name, exec.ErrNotFound, pathEnv)
}

// copyLines writes each line read from r as one log entry, splitting lines
// longer than tasklog.MaxLine.
func copyLines(r *os.File, stream string, logs *tasklog.Writer, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	defer r.Close()
	br := bufio.NewReaderSize(r, tasklog.MaxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			line = trimNewline(line)
			// Logging must never stop the task: on a full disk lines are lost.
			_ = logs.Write(tasklog.Entry{Time: time.Now(), Stream: stream, Line: line})
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "task-shim: read %s: %v\n", stream, err)
			}
			return
		}
	}
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1]
	}
	return b
}

// exitStatus turns the command's end into an ExitStatus.
func exitStatus(ps *os.ProcessState, waitErr error) runtime.ExitStatus {
	if ps == nil {
		return runtime.ExitStatus{Code: -1, Err: fmt.Sprintf("wait for the task: %v", waitErr)}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return runtime.ExitStatus{Code: 128 + int(ws.Signal()), Signal: runtime.SignalName(ws.Signal())}
	}
	return runtime.ExitStatus{Code: ps.ExitCode()}
}
