package containerd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"shoal/worker/runtime/tasklog"
)

// RunTaskLogger is `shoal task-logger PATH`, started by a container's runc
// shim as containerd's binary log driver: the shim passes the container's
// stdout on fd 3 and stderr on fd 4 and waits until fd 5 is closed before it
// starts the container. It writes the output in the tasklog format to PATH
// (rotated beside it) and returns once both streams have ended. Because the
// shim, not the agent, runs it, logs keep flowing while the agent is down.
//
// While it runs it holds an exclusive flock on logger.lock beside PATH, so
// the runtime knows when the last line is written.
func RunTaskLogger(path string) error {
	for fd := 3; fd <= 5; fd++ {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
			return errors.New("task-logger: fds 3, 4 and 5 must be pipes; it is started by containerd's shim, not by hand")
		}
	}
	stdout := os.NewFile(3, "stdout")
	stderr := os.NewFile(4, "stderr")
	ready := os.NewFile(5, "ready")
	dir := filepath.Dir(path)
	fail := func(err error) error {
		// The shim discards this process's output; leave the reason beside
		// the log, and release the shim so the container still runs.
		_ = os.WriteFile(filepath.Join(dir, loggerErr), []byte(err.Error()+"\n"), 0o640)
		ready.Close()
		drain(stdout, stderr)
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fail(fmt.Errorf("task-logger: %w", err))
	}
	lock, err := os.OpenFile(filepath.Join(dir, loggerLock), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return fail(fmt.Errorf("task-logger: %w", err))
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fail(fmt.Errorf("task-logger: lock: %w", err))
	}
	w, err := tasklog.NewWriter(path, 0, 0)
	if err != nil {
		return fail(fmt.Errorf("task-logger: %w", err))
	}
	defer w.Close()
	if err := ready.Close(); err != nil {
		return fmt.Errorf("task-logger: signal readiness: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { copyLines(stdout, tasklog.Stdout, w) })
	wg.Go(func() { copyLines(stderr, tasklog.Stderr, w) })
	wg.Wait()
	return nil
}

// drain reads the streams to their end so that a container whose logger
// failed is not blocked on a full pipe.
func drain(files ...*os.File) {
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Go(func() { _, _ = io.Copy(io.Discard, f) })
	}
	wg.Wait()
}

// copyLines writes each line read from f as one entry, splitting lines
// longer than tasklog.MaxLine.
func copyLines(f *os.File, stream string, w *tasklog.Writer) {
	defer f.Close()
	br := bufio.NewReaderSize(f, tasklog.MaxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			// Logging must never stop the task: on a full disk lines are lost.
			_ = w.Write(tasklog.Entry{Time: time.Now(), Stream: stream, Line: line})
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
