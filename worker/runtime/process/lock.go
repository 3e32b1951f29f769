package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockFile is held (flock, exclusive) by a task's shim for its whole life.
// Only the holder starts the task's command, so a task never runs twice: an
// agent that died between starting a shim and reading its pid file leaves a
// shim behind that the next agent waits for instead of starting another.
const lockFile = "lock"

// lockTask takes dir's task lock without waiting. ok is false when another
// process holds it. The lock lasts until the returned file is closed or the
// process exits (the descriptor is close-on-exec, so the task's command does
// not inherit it).
func lockTask(dir string) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return f, true, nil
}

// lockHeld reports whether a shim holds dir's task lock.
func lockHeld(dir string) bool {
	f, ok, err := lockTask(dir)
	if err != nil {
		return false
	}
	if ok {
		f.Close()
	}
	return !ok
}

// awaitPID waits, within startTimeout, for the live shim of dir to write its
// pid file, for a task whose shim was started by an earlier agent.
func awaitPID(ctx context.Context, dir string) (procInfo, bool) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if info, ok := readPID(dir); ok {
			return info, true
		}
		if !lockHeld(dir) {
			return readPID(dir)
		}
		select {
		case <-ctx.Done():
			return procInfo{}, false
		case <-tick.C:
		}
	}
}
