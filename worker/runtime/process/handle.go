package process

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	"shoal/worker/runtime"
)

// waitPoll is how often Wait looks at the task's exit file and processes.
const waitPoll = 50 * time.Millisecond

// procInfo is the content of the pid file and the Handle's state.
type procInfo struct {
	PID       int    `json:"pid"`
	Start     uint64 `json:"start"` // field 22 of /proc/PID/stat
	ShimPID   int    `json:"shim_pid"`
	ShimStart uint64 `json:"shim_start"`
}

func decodeState(b []byte, v *procInfo) error { return json.Unmarshal(b, v) }

// handle is a task started by this agent or adopted; both behave the same,
// since everything is read from the task directory and /proc.
type handle struct {
	dir  string
	info procInfo
}

var (
	_ runtime.Handle      = (*handle)(nil)
	_ runtime.ConnCounter = (*handle)(nil)
)

func (h *handle) State() []byte {
	b, _ := json.Marshal(h.info)
	return b
}

func (h *handle) Info() runtime.Info { return runtime.Info{PID: int64(h.info.PID)} }

// Wait polls for the exit file. If the command and its shim are both gone
// and there is none, the status is lost: the shim was killed.
func (h *handle) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	for {
		if st, ok := h.ended(); ok {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return runtime.ExitStatus{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// ended reports the exit status if the task has ended.
func (h *handle) ended() (runtime.ExitStatus, bool) {
	if st, ok := readExit(h.dir); ok {
		return st, true
	}
	if alive(h.info.PID, h.info.Start) || alive(h.info.ShimPID, h.info.ShimStart) {
		return runtime.ExitStatus{}, false
	}
	// The shim may have written the file between the two looks.
	if st, ok := readExit(h.dir); ok {
		return st, true
	}
	return runtime.ExitStatus{
		Code: -1,
		Err:  fmt.Sprintf("process %d ended but its exit status is unknown: its task-shim (pid %d) was killed", h.info.PID, h.info.ShimPID),
		At:   time.Now(),
	}, true
}

// InboundConns counts the connections of the task's process group: the
// task runs in the host's network, so only the sockets its processes hold
// count. The group is the task's until the task has ended (see killGroup).
func (h *handle) InboundConns(context.Context) (int, error) {
	if _, done := h.ended(); done {
		return 0, nil
	}
	return runtime.InboundConnsOf(groupMembers(h.info.PID))
}

// Stop signals the task's process group, waits up to grace, then kills the
// group and waits for the end.
func (h *handle) Stop(ctx context.Context, signal string, grace time.Duration) error {
	sig, err := runtime.ParseSignal(signal)
	if err != nil {
		return err
	}
	if _, done := h.ended(); done {
		return nil
	}
	killGroup(h.info, sig)
	graceCtx, cancel := context.WithTimeout(ctx, grace)
	_, err = h.Wait(graceCtx)
	cancel()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, done := h.ended(); !done {
		killGroup(h.info, syscall.SIGKILL)
	}
	_, err = h.Wait(ctx)
	return err
}

// killGroup signals the command's process group (its PGID is its PID), but
// only while the group can still be the task's: the leader is the same
// process, or the shim is there (it kills the group when the leader exits,
// and until then the PID cannot be reused).
func killGroup(info procInfo, sig syscall.Signal) {
	if info.PID <= 0 {
		return
	}
	if alive(info.PID, info.Start) || alive(info.ShimPID, info.ShimStart) {
		_ = syscall.Kill(-info.PID, sig)
	}
}
