package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"shoal/internal/procs"
)

// taskStopTimeout bounds the kill of the tasks left behind by a test.
const taskStopTimeout = 10 * time.Second

// stopTasks kills every task that the process runtime started for n and
// waits for its end; the task directories stay, for SHOAL_TEST_KEEP. Tasks
// run detached from the daemon, so that they survive an agent restart:
// killing the daemon leaves them running, and nothing else would ever end
// them. Call it once the daemon is gone, so that no agent starts or adopts
// tasks meanwhile.
//
// Each task's shim is the leader of its own session (the runtime starts it
// with setsid) and the task's processes belong to that session, so killing
// the sessions of the shims under n's data dir ends everything. It works from
// /proc alone: the runtime's packages use testutil in their own tests.
func (n *Node) stopTasks() error {
	deadline := time.Now().Add(taskStopTimeout)
	for {
		shims := shimsUnder(n.DataDir)
		if len(shims) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: task shims still run after %s: %v", n.Name, taskStopTimeout, shims)
		}
		sessions := map[int]bool{}
		for pid := range shims {
			sessions[pid] = true
		}
		killSessions(sessions)
		time.Sleep(PollInterval)
	}
}

// shimsUnder maps the PIDs of the running task shims of the node in dataDir
// (`shoal task-shim --dir DATADIR/tasks/ID -- …`) to their command lines.
func shimsUnder(dataDir string) map[int]string {
	return procs.Find(func(cmdline string) bool {
		return strings.Contains(cmdline, " task-shim ") && strings.Contains(cmdline, dataDir+string(filepath.Separator))
	})
}

// killSessions sends SIGKILL to every process in the given sessions.
func killSessions(sessions map[int]bool) {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...; comm may hold spaces.
		end := strings.LastIndexByte(string(b), ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(string(b[end+1:]))
		if len(fields) < 4 {
			continue
		}
		sid, err := strconv.Atoi(fields[3])
		if err != nil || !sessions[sid] {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
