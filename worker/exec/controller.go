package exec

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

const (
	// defaultStopGrace applies when the spec sets no stop_grace_period_ms.
	defaultStopGrace = 10 * time.Second
	// retryDelay is how long a controller waits after a step failed for a
	// reason that may pass (a full disk, a runtime error while stopping).
	retryDelay = time.Second
)

// Short names for the states a controller moves through.
const (
	assigned  = shoalpb.TaskState_TASK_STATE_ASSIGNED
	accepted  = shoalpb.TaskState_TASK_STATE_ACCEPTED
	preparing = shoalpb.TaskState_TASK_STATE_PREPARING
	starting  = shoalpb.TaskState_TASK_STATE_STARTING
	running   = shoalpb.TaskState_TASK_STATE_RUNNING
	complete  = shoalpb.TaskState_TASK_STATE_COMPLETE
	shutdown  = shoalpb.TaskState_TASK_STATE_SHUTDOWN
	failed    = shoalpb.TaskState_TASK_STATE_FAILED
	rejected  = shoalpb.TaskState_TASK_STATE_REJECTED
	remove    = shoalpb.TaskState_TASK_STATE_REMOVE
)

// stepResult tells the controller loop what to do after a step.
type stepResult int

const (
	stepNext      stepResult = iota // take the next step now
	stepIdle                        // nothing to do until the task changes
	stepForgotten                   // the task is gone; the controller ends
)

// controller drives one task. Its loop calls step, which performs exactly
// one transition; everything it needs is re-read at every step, so changes
// of the desired state between steps are never missed.
type controller struct {
	e      *Executor
	id     string
	rt     runtime.Runtime
	notify chan struct{} // cap 1: the task changed (desired state, forget)

	mu          sync.Mutex
	task        *shoalpb.Task // as assigned; Status is this node's view
	handle      runtime.Handle
	handleState []byte
	runtimeName string // runtime that started the task ("" before Start)
	forget      bool   // stop, remove and drop the task without reporting
	adopt       bool   // loaded from disk: find the process before anything
	seq         uint64 // numbers records, so an older one never overwrites a newer
	// interrupt cancels the runtime call in progress that a stop must
	// interrupt (see interruptible); nil when there is none.
	interrupt context.CancelFunc
	// unhealthy is set, with the failure, once the liveness check has
	// failed for good: the next step stops the task and fails it.
	unhealthy string
	// stopProbes ends the prober of the running task; nil when none runs.
	stopProbes context.CancelFunc
	probes     sync.WaitGroup

	saveMu   sync.Mutex // orders writes of the task's record
	savedSeq uint64
	deleted  bool
}

// newController makes the controller of t, which it takes: the caller must
// not use t afterwards.
func newController(e *Executor, t *shoalpb.Task, rec *record) *controller {
	c := &controller{
		e:      e,
		id:     t.Id,
		rt:     e.cfg.Runtime,
		notify: make(chan struct{}, 1),
		task:   t,
	}
	if rec != nil {
		c.handleState = rec.Handle
		c.runtimeName = rec.Runtime
		c.forget = rec.Forget
		st := c.task.GetStatus().GetState()
		c.adopt = st == starting || st == running
	}
	return c
}

// assign takes a newer version of the task: only its desired state matters,
// a task's spec never changes.
func (c *controller) assign(t *shoalpb.Task) {
	c.mu.Lock()
	if c.forget || c.task.DesiredState == t.DesiredState {
		c.mu.Unlock()
		return
	}
	c.task.DesiredState = t.DesiredState
	rec := c.recordLocked()
	c.interruptLocked()
	c.mu.Unlock()
	c.save(rec)
	poke(c.notify)
}

// forgetTask makes the controller stop the task, remove it and end, without
// reporting: the leader no longer lists it.
func (c *controller) forgetTask() {
	c.mu.Lock()
	if c.forget {
		c.mu.Unlock()
		return
	}
	c.forget = true
	rec := c.recordLocked()
	c.interruptLocked()
	c.mu.Unlock()
	c.save(rec)
	poke(c.notify)
}

// run steps the task until it is forgotten or ctx ends; the task itself is
// left running when ctx ends.
func (c *controller) run(ctx context.Context) {
	defer c.probes.Wait()
	defer c.endProbes()
	for ctx.Err() == nil {
		res, err := c.step(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			c.e.log.Warn("task step failed; retrying", "task", c.id, "err", err)
			c.waitChange(ctx, time.After(retryDelay))
		case res == stepForgotten:
			c.e.forgotten(c)
			return
		case res == stepIdle:
			c.waitChange(ctx, nil)
		}
	}
}

// waitChange waits for a change of the task, ctx or timeout.
func (c *controller) waitChange(ctx context.Context, timeout <-chan time.Time) {
	select {
	case <-ctx.Done():
	case <-c.notify:
	case <-timeout:
	}
}

// step performs one transition of the task.
func (c *controller) step(ctx context.Context) (stepResult, error) {
	c.mu.Lock()
	state := c.task.GetStatus().GetState()
	stopWanted := c.stopWantedLocked()
	removeWanted := c.forget || c.task.DesiredState == remove
	adopt := c.adopt
	h := c.handle
	unhealthy := c.unhealthy
	c.mu.Unlock()

	switch {
	case adopt:
		return stepNext, c.adoptTask(ctx)
	case state >= complete:
		if !removeWanted {
			return stepIdle, nil
		}
		if err := c.rt.Remove(ctx, c.id); err != nil {
			return stepNext, err
		}
		if err := c.deleteRecord(); err != nil {
			return stepNext, err
		}
		return stepForgotten, nil
	case stopWanted:
		return stepNext, c.stop(ctx, h)
	case state <= assigned:
		c.setStatus(newStatus(accepted, "accepted"))
	case state == accepted:
		c.setStatus(newStatus(preparing, "preparing"))
	case state == preparing:
		err := c.interruptible(ctx, func(ctx context.Context) error { return c.rt.Prepare(ctx, c.snapshotTask()) })
		switch {
		case ctx.Err() != nil || c.stopWanted():
			// Interrupted: the next step stops or the next Run resumes.
		case err != nil:
			st := newStatus(rejected, "preparing failed")
			st.Err = "task: " + err.Error()
			c.setStatus(st)
		default:
			c.setStatus(newStatus(starting, "starting"))
		}
	case state == starting:
		h, err := c.rt.Start(ctx, c.snapshotTask())
		if err != nil {
			if ctx.Err() != nil {
				return stepNext, nil
			}
			st := newStatus(failed, "starting failed")
			st.Err = "task: " + err.Error()
			c.setStatus(st)
			return stepNext, nil
		}
		c.setHandle(h)
		c.setStatus(c.startedStatus(h))
	case state == running && h == nil:
		// Only a bug gets here; finding the process again is the way out.
		c.mu.Lock()
		c.adopt = true
		c.mu.Unlock()
	case state == running && unhealthy != "":
		return stepNext, c.failUnhealthy(ctx, h, unhealthy)
	case state == running:
		c.startProbes(ctx, h)
		var exit runtime.ExitStatus
		err := c.interruptible(ctx, func(ctx context.Context) (err error) {
			exit, err = h.Wait(ctx)
			return err
		})
		if err != nil {
			return stepNext, nil // interrupted: the next step looks again
		}
		c.setStatus(exitStatus(exit, h.Info()))
	}
	return stepNext, nil
}

// adoptTask finds again the task an earlier agent was starting or running.
func (c *controller) adoptTask(ctx context.Context) error {
	c.mu.Lock()
	state, saved, started := c.task.GetStatus().GetState(), c.handleState, c.runtimeName
	c.mu.Unlock()
	if started != "" && started != c.rt.Name() {
		c.lost(fmt.Sprintf("the task was started by the %s runtime and this agent runs %s", started, c.rt.Name()))
		return nil
	}
	h, err := c.rt.Adopt(ctx, c.id, saved)
	switch {
	case errors.Is(err, runtime.ErrGone) && state == starting:
		// The earlier agent stopped before starting it: start it now.
		c.mu.Lock()
		c.adopt = false
		c.mu.Unlock()
		return nil
	case errors.Is(err, runtime.ErrGone):
		c.lost("the task vanished while the agent was down: " + err.Error())
		return nil
	case err != nil:
		return fmt.Errorf("adopt: %w", err)
	}
	c.setHandle(h)
	c.mu.Lock()
	c.adopt = false
	c.mu.Unlock()
	if state == starting {
		c.setStatus(c.startedStatus(h))
	}
	c.e.log.Info("task adopted", "task", c.id, "pid", h.Info().PID)
	return nil
}

// stop ends the task on its desired state and reports SHUTDOWN: out of
// the endpoints, its connections drained, then its stop signal. A task that
// failed its liveness check is not drained (failUnhealthy): its clients
// wait on a broken task.
func (c *controller) stop(ctx context.Context, h runtime.Handle) error {
	if h == nil {
		c.setStatus(newStatus(shutdown, "shutdown before it started"))
		return nil
	}
	c.endProbes()
	c.mu.Lock()
	spec := c.task.GetSpec().GetContainer() // a task's spec never changes
	c.mu.Unlock()
	grace := time.Duration(spec.GetStopGracePeriodMs()) * time.Millisecond
	if grace <= 0 {
		grace = defaultStopGrace
	}
	c.deregister(ctx, false)
	c.drain(ctx, h, grace)
	if err := h.Stop(ctx, spec.GetStopSignal(), grace); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	exit, err := h.Wait(ctx)
	if err != nil {
		return err
	}
	st := newStatus(shutdown, "shutdown")
	st.ExitCode = int32(exit.Code)
	st.Pid, st.ContainerId = h.Info().PID, h.Info().ContainerID
	c.setStatus(st)
	return nil
}

// interruptible runs fn with a context that also ends when the task must
// stop, so a long prepare (an image pull) or a wait yields to a shutdown.
// The change that asks for the stop cancels it (interruptLocked): no
// goroutine watches for it, so a node's running tasks cost one goroutine
// each.
func (c *controller) interruptible(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.interrupt = cancel
	c.interruptLocked() // the stop may have been asked already
	c.mu.Unlock()
	err := fn(ctx)
	c.mu.Lock()
	c.interrupt = nil
	c.mu.Unlock()
	return err
}

// interruptLocked cancels the interruptible call in progress if the task
// must stop. c.mu is held.
func (c *controller) interruptLocked() {
	if c.interrupt != nil && (c.stopWantedLocked() || c.unhealthy != "") {
		c.interrupt()
	}
}

func (c *controller) stopWanted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopWantedLocked()
}

// stopWantedLocked reports whether the task must stop. c.mu is held.
func (c *controller) stopWantedLocked() bool {
	return c.forget || c.task.DesiredState > running
}

// lost marks a task whose fate is unknown as failed.
func (c *controller) lost(why string) {
	c.mu.Lock()
	c.adopt = false
	c.mu.Unlock()
	st := newStatus(failed, "lost")
	st.Err = "task: " + why
	st.ExitCode = -1
	c.setStatus(st)
}

func (c *controller) setHandle(h runtime.Handle) {
	c.mu.Lock()
	c.handle = h
	c.handleState = h.State()
	c.runtimeName = c.rt.Name()
	c.mu.Unlock()
}

// setStatus records, persists and reports a new status. ACCEPTED and
// PREPARING are not persisted: an agent that restarts with the task's record
// at ASSIGNED takes it through them again, as nothing has started yet (the
// leader ignores a report that does not move the task forward).
func (c *controller) setStatus(st *shoalpb.TaskStatus) {
	c.mu.Lock()
	c.task.Status = st
	if st.State != running {
		c.endProbesLocked()
	}
	var rec encodedRecord
	if st.State != accepted && st.State != preparing {
		rec = c.recordLocked()
	}
	report := !c.forget
	c.mu.Unlock()
	c.save(rec)
	if report {
		c.e.updates.publish(c.id, st)
	}
}

// republish queues the current status for Updates again.
func (c *controller) republish() {
	c.mu.Lock()
	st, report := c.task.GetStatus(), !c.forget
	c.mu.Unlock()
	if report && st != nil {
		c.e.updates.publish(c.id, st)
	}
}

// save persists rec unless it is empty, a newer record was saved already or
// the record has been deleted (the task is forgotten).
func (c *controller) save(rec encodedRecord) {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if rec.seq == 0 || c.deleted || rec.seq <= c.savedSeq {
		return
	}
	err := rec.err
	if err == nil {
		err = writeRecord(c.e.dir, c.id, rec.data, c.savedSeq > 0)
	}
	if err != nil {
		// The task goes on; after an agent restart its state may be older.
		c.e.log.Error("persist task", "task", c.id, "err", err)
		return
	}
	c.savedSeq = rec.seq
}

func (c *controller) deleteRecord() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if err := deleteRecord(c.e.dir, c.id); err != nil {
		return err
	}
	c.deleted = true
	return nil
}

func (c *controller) snapshotTask() *shoalpb.Task {
	c.mu.Lock()
	defer c.mu.Unlock()
	return proto.Clone(c.task).(*shoalpb.Task)
}

func (c *controller) snapshotRecord() encodedRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recordLocked()
}

// encodedRecord is a numbered record, encoded for writing.
type encodedRecord struct {
	seq  uint64 // 0: nothing to write
	data []byte
	err  error
}

// recordLocked numbers and encodes the task's record; encoding under c.mu
// spares a copy of the task. c.mu is held.
func (c *controller) recordLocked() encodedRecord {
	c.seq++
	data, err := encodeRecord(&record{Task: c.task, Runtime: c.runtimeName, Handle: c.handleState, Forget: c.forget})
	return encodedRecord{seq: c.seq, data: data, err: err}
}

func newStatus(state shoalpb.TaskState, msg string) *shoalpb.TaskStatus {
	return &shoalpb.TaskStatus{State: state, Message: msg, Timestamp: timestamppb.Now()}
}

// exitStatus is the status of a task that ended on its own.
func exitStatus(exit runtime.ExitStatus, info runtime.Info) *shoalpb.TaskStatus {
	st := newStatus(complete, "exited")
	if !exit.At.IsZero() {
		st.Timestamp = timestamppb.New(exit.At)
	}
	st.ExitCode = int32(exit.Code)
	st.Pid, st.ContainerId = info.PID, info.ContainerID
	st.OomKilled = exit.OOMKilled
	switch {
	case exit.Err != "":
		st.State, st.Err = failed, "task: "+exit.Err
	case exit.OOMKilled:
		st.State, st.Err = failed, "task: killed for lack of memory (OOM)"
	case exit.Signal != "":
		st.State, st.Err = failed, fmt.Sprintf("task: killed by signal %s", exit.Signal)
	case exit.Code != 0:
		st.State, st.Err = failed, fmt.Sprintf("task: non-zero exit (%d)", exit.Code)
	}
	return st
}
