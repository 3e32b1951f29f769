package exec

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// checksOf resolves the task's liveness and readiness checks.
func (c *controller) checksOf(h runtime.Handle) (live, ready *check) {
	c.mu.Lock()
	spec := c.task.GetSpec().GetContainer() // a task's spec never changes
	c.mu.Unlock()
	return livenessCheck(spec, h.Info().Healthcheck), readinessCheck(spec)
}

// startedStatus is the status of a task that has just started running.
func (c *controller) startedStatus(h runtime.Handle) *shoalpb.TaskStatus {
	st := newStatus(running, "started")
	st.Pid, st.ContainerId = h.Info().PID, h.Info().ContainerID
	v := initialVerdict(c.checksOf(h))
	st.Health, st.Ready = v.health, v.ready
	return st
}

// startProbes starts the prober of the running task, unless it runs
// already or the task has no check. It ends with ctx, when the task leaves
// RUNNING (setStatus) or when the controller ends (run).
func (c *controller) startProbes(ctx context.Context, h runtime.Handle) {
	live, ready := c.checksOf(h)
	if live == nil && ready == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopProbes != nil || c.task.GetStatus().GetState() != running || c.stopWantedLocked() {
		return
	}
	st := c.task.GetStatus()
	initial := verdict{health: st.GetHealth(), ready: st.GetReady()}
	if live != nil && initial.health == healthNone {
		// Recorded before the task had a check (an older agent).
		initial = initialVerdict(live, ready)
	}
	ctx, cancel := context.WithCancel(ctx)
	c.stopProbes = cancel
	p := newProber(live, ready, h, c.e.clock, initial, c.healthChanged)
	c.probes.Go(func() { p.run(ctx) })
}

// endProbes stops the prober, if one runs; it does not wait for it.
func (c *controller) endProbes() {
	c.mu.Lock()
	c.endProbesLocked()
	c.mu.Unlock()
}

// endProbesLocked is endProbes with c.mu held. The prober is never started
// again for the same task: once it has left RUNNING it never returns.
func (c *controller) endProbesLocked() {
	if c.stopProbes != nil {
		c.stopProbes()
		c.stopProbes = func() {}
	}
}

// healthChanged records and reports a new verdict of the checks while the
// task stays RUNNING; a failure marks the task for failing. The report is
// published under c.mu, so it can never be queued after a later status
// that setStatus publishes.
func (c *controller) healthChanged(v verdict, failure string) {
	c.mu.Lock()
	cur := c.task.GetStatus()
	if cur.GetState() != running || c.stopWantedLocked() || c.unhealthy != "" {
		c.mu.Unlock()
		return
	}
	if failure != "" {
		// Reported by failUnhealthy: as not ready first if the task may
		// receive traffic, then as FAILED with the failure.
		c.unhealthy = failure
		c.interruptLocked()
		c.mu.Unlock()
		poke(c.notify)
		return
	}
	st := proto.Clone(cur).(*shoalpb.TaskStatus)
	if v.ready != st.Ready {
		// The timestamp says since when the task has been (not) ready: a
		// rollout's monitor and delay count from it.
		st.Timestamp = timestamppb.Now()
	}
	st.Health, st.Ready = v.health, v.ready
	c.task.Status = st
	rec := c.recordLocked()
	if !c.forget {
		c.e.updates.publish(c.id, st)
	}
	c.mu.Unlock()
	c.save(rec) // numbered: a later record saved first is never overwritten
	c.e.log.Info("task health changed", "task", c.id, "health", v.health, "ready", v.ready)
}

// failUnhealthy stops a task whose liveness check failed for good, with its
// stop signal and grace period, and reports it FAILED so that its restart
// policy replaces it.
func (c *controller) failUnhealthy(ctx context.Context, h runtime.Handle, failure string) error {
	c.endProbes()
	if h == nil {
		st := newStatus(failed, "unhealthy")
		st.Err, st.Health = failure, healthUnhealthy
		c.setStatus(st)
		return nil
	}
	c.mu.Lock()
	spec := c.task.GetSpec().GetContainer()
	c.mu.Unlock()
	grace := time.Duration(spec.GetStopGracePeriodMs()) * time.Millisecond
	if grace <= 0 {
		grace = defaultStopGrace
	}
	c.e.log.Warn("task unhealthy; stopping it", "task", c.id, "err", failure)
	c.deregister(ctx, true)
	if err := h.Stop(ctx, spec.GetStopSignal(), grace); err != nil {
		return fmt.Errorf("stop unhealthy task: %w", err)
	}
	exit, err := h.Wait(ctx)
	if err != nil {
		return err
	}
	st := newStatus(failed, "unhealthy")
	st.Err, st.Health = failure, healthUnhealthy
	st.ExitCode = int32(exit.Code)
	st.Pid, st.ContainerId = h.Info().PID, h.Info().ContainerID
	c.setStatus(st)
	return nil
}

// deregister keeps a task that may be receiving traffic running until no
// node sends it any more: the caller is about to stop it. A task stopped
// on its desired state has left every node's endpoints already (the
// leader drops it when its desired state changes); a failing one (report)
// is first reported not ready, which drops it. Then it waits the node's
// DeregisterDelay, or until ctx ends.
func (c *controller) deregister(ctx context.Context, report bool) {
	c.mu.Lock()
	st := c.task.GetStatus()
	endpoint := st.GetState() == running && st.GetReady() && c.task.GetAddress() != ""
	var rec encodedRecord
	reported := endpoint && report
	if reported {
		st = proto.Clone(st).(*shoalpb.TaskStatus)
		st.Ready, st.Health = false, healthUnhealthy
		c.task.Status = st
		rec = c.recordLocked()
		if !c.forget {
			c.e.updates.publish(c.id, st)
		}
	}
	c.mu.Unlock()
	if reported {
		c.save(rec)
	}
	if !endpoint || c.e.cfg.DeregisterDelay == nil {
		return
	}
	t := time.NewTimer(c.e.cfg.DeregisterDelay())
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
