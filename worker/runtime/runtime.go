// Package runtime is the boundary between the executor (worker/exec) and the
// things that actually run tasks: host processes today (runtime/process),
// containerd later. The executor only ever talks to a Runtime and the Handles
// it returns, so a new runtime plugs in below it without changes above.
//
// Contract shared by every runtime:
//
//   - A task is named by its ID; everything a runtime keeps for a task (files,
//     containers, snapshots) is keyed by it and survives the agent process, so
//     that a new agent can Adopt what an earlier one started.
//   - Tasks outlive the agent: cancelling a ctx passed to any method only
//     abandons the call, it never stops the task.
//   - The task's output is written in the tasklog format (runtime/tasklog) at
//     LogPath(taskID), rotated files beside it, and kept until Remove.
//   - Once a Handle's Wait has returned, the runtime may release what the task
//     held (a containerd runtime deletes the container) except its logs.
package runtime

import (
	"context"
	"errors"
	"time"

	shoalpb "shoal/proto"
)

// ErrGone is returned by Adopt when the runtime holds no trace of the task: it
// was never started or has been removed. A task that was started and then
// vanished without an exit status is adopted, and its Wait reports the loss in
// ExitStatus.Err.
var ErrGone = errors.New("task no longer exists in the runtime")

// ErrInvalidSpec marks a task spec the runtime cannot run (for example no
// command for the process runtime); Prepare wraps it with what to fix.
var ErrInvalidSpec = errors.New("invalid task spec")

// ErrImageNotFound is wrapped by Prepare's error when the task's image is on
// no registry and no node of the cluster; the task fails with it.
var ErrImageNotFound = errors.New("image not found")

// Runtime runs tasks on this node. Implementations must be safe for
// concurrent use by many task controllers.
type Runtime interface {
	// Name is the runtime's name as given to --runtime ("process").
	Name() string
	// Prepare makes everything the task needs short of starting it (check
	// the spec, pull the image, create directories). It is idempotent, and
	// an error wrapping ErrInvalidSpec means retrying cannot help.
	Prepare(ctx context.Context, t *shoalpb.Task) error
	// Start starts a prepared task and returns once it runs (its PID or
	// container ID is known) or has failed to start. The Handle's State must
	// be persisted by the caller for Adopt.
	Start(ctx context.Context, t *shoalpb.Task) (Handle, error)
	// Adopt re-attaches to a task started by an earlier agent from the state
	// its Handle reported (state may be nil if the agent stopped before
	// persisting it; the runtime then relies on what it keeps itself). It
	// returns ErrGone if the runtime holds no trace of the task.
	Adopt(ctx context.Context, taskID string, state []byte) (Handle, error)
	// Remove deletes everything the runtime holds for the task, its logs
	// included, killing whatever is left of it. The executor calls it only
	// when it forgets the task, so finished tasks keep their logs until then.
	// Removing an unknown task is not an error.
	Remove(ctx context.Context, taskID string) error
	// LogPath is where the task's output is written in the tasklog format;
	// the file may not exist yet.
	LogPath(taskID string) string
}

// Handle controls one started task. Its methods are safe for concurrent use.
type Handle interface {
	// State is what Adopt needs to find the task again; opaque to callers.
	State() []byte
	// Info identifies the running task to users.
	Info() Info
	// Wait blocks until the task has ended and returns how. It works the
	// same for adopted tasks and may be called any number of times. Its
	// error is only ever ctx's; a task whose exit status is lost is reported
	// through ExitStatus.Err.
	Wait(ctx context.Context) (ExitStatus, error)
	// Stop sends signal ("SIGTERM" when empty) to the task's processes, then
	// SIGKILL if they are still there after grace, and returns once the task
	// has ended (Wait then returns at once) or ctx ends. Stopping a task that
	// has already ended is not an error.
	Stop(ctx context.Context, signal string, grace time.Duration) error
}

// Info identifies a running task: a host PID, a container ID, or both.
type Info struct {
	PID         int64
	ContainerID string
	// IP is the task's own address, for HTTP and TCP probes; empty when
	// the task shares the host's network.
	IP string
	// Healthcheck is the image's HEALTHCHECK, used when the service sets
	// none; nil when the image has none.
	Healthcheck *shoalpb.HealthCheck
}

// ExitStatus is how a task ended.
type ExitStatus struct {
	// Code is the exit code; for a task killed by a signal it is 128 plus
	// the signal number, as shells report it.
	Code int `json:"code"`
	// Signal names the signal that killed the task ("SIGKILL"), if any.
	Signal    string `json:"signal,omitempty"`
	OOMKilled bool   `json:"oom_killed,omitempty"`
	// Err says why the task could not run or why its status is unknown,
	// e.g. an executable that was not found or a shim that was killed.
	Err string    `json:"err,omitempty"`
	At  time.Time `json:"at"`
}

// Success reports whether the task ran and exited with code 0.
func (s ExitStatus) Success() bool { return s.Code == 0 && s.Signal == "" && s.Err == "" }
