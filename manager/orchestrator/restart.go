package orchestrator

import (
	"time"

	shoalpb "shoal/proto"
)

// restartVerdict is what happens to a unit whose task died on its own.
type restartVerdict int

const (
	// restartNow: create the replacement in this plan.
	restartNow restartVerdict = iota
	// restartLater: the restart delay has not passed; wake up at the
	// returned time.
	restartLater
	// restartNever: the policy refuses; the unit stays empty (but still
	// counts towards the service's replicas).
	restartNever
)

// restartDelay is policy's delay: DefaultRestartDelay when delay_ms is 0,
// none when it is negative (explicit zero, stored as -1 by the API).
func restartDelay(p *shoalpb.RestartPolicy) time.Duration {
	switch ms := p.GetDelayMs(); {
	case ms == 0:
		return DefaultRestartDelay
	case ms < 0:
		return 0
	default:
		return time.Duration(ms) * time.Millisecond
	}
}

// isFailure reports whether t's end counts as a restart attempt: it ended on
// its own (FAILED, REJECTED, COMPLETE), not because it was stopped or its
// node was lost.
func isFailure(t *shoalpb.Task) bool {
	switch t.GetStatus().GetState() {
	case shoalpb.TaskState_TASK_STATE_FAILED, shoalpb.TaskState_TASK_STATE_REJECTED, shoalpb.TaskState_TASK_STATE_COMPLETE:
		return true
	}
	return false
}

// decideRestart applies policy p to dead, the newest undecided task of a unit
// whose tasks are history (see the package doc for the conventions). job is
// true for jobs, whose successful completions are never restarted. When the
// verdict is restartLater, at is when the delay ends.
func decideRestart(p *shoalpb.RestartPolicy, dead *shoalpb.Task, history []*shoalpb.Task, job bool, now time.Time) (v restartVerdict, at time.Time) {
	state := dead.GetStatus().GetState()
	if state == shoalpb.TaskState_TASK_STATE_ORPHANED {
		return restartNow, time.Time{}
	}
	if job && state == shoalpb.TaskState_TASK_STATE_COMPLETE {
		return restartNever, time.Time{}
	}
	switch p.GetCondition() {
	case shoalpb.RestartCondition_RESTART_CONDITION_NONE:
		return restartNever, time.Time{}
	case shoalpb.RestartCondition_RESTART_CONDITION_ON_FAILURE:
		if state != shoalpb.TaskState_TASK_STATE_FAILED && state != shoalpb.TaskState_TASK_STATE_REJECTED {
			return restartNever, time.Time{}
		}
	}
	if max := p.GetMaxAttempts(); max > 0 && failuresInWindow(p, dead, history) > max {
		return restartNever, time.Time{}
	}
	ts := dead.GetStatus().GetTimestamp()
	if ts == nil {
		return restartNow, time.Time{}
	}
	at = ts.AsTime().Add(restartDelay(p))
	if now.Before(at) {
		return restartLater, at
	}
	return restartNow, time.Time{}
}

// failuresInWindow counts the failures among history made from the same task
// spec (and job iteration) as dead, within window_ms before dead's status
// timestamp (all of them when window_ms is 0).
func failuresInWindow(p *shoalpb.RestartPolicy, dead *shoalpb.Task, history []*shoalpb.Task) uint64 {
	end := dead.GetStatus().GetTimestamp().AsTime()
	window := time.Duration(p.GetWindowMs()) * time.Millisecond
	var n uint64
	for _, t := range history {
		if !isFailure(t) || !sameTaskSpec(t, dead.GetSpec()) || t.GetJobIteration() != dead.GetJobIteration() {
			continue
		}
		if window > 0 {
			ts := t.GetStatus().GetTimestamp().AsTime()
			if ts.After(end) || ts.Before(end.Add(-window)) {
				continue
			}
		}
		n++
	}
	return n
}

// deadUnit is the state of unit u, whose newest undecided task dead is
// dead, as judgeRestart decides it.
func (b *builder) deadUnit(u *unit, dead *shoalpb.Task) unitState {
	kind := unitRetired
	switch b.judgeRestart(u, dead) {
	case restartNow:
		kind = unitRestart
	case restartLater:
		kind = unitWaiting
	}
	return unitState{u: u, kind: kind, task: dead}
}

// judgeRestart decides the unit u whose newest undecided task is dead: an
// outdated one (not for jobs) is replaced at once, as part of the update;
// otherwise the restart policy decides, and a delayed restart sets the plan's
// Wake.
func (b *builder) judgeRestart(u *unit, dead *shoalpb.Task) restartVerdict {
	if !b.isJob() && b.outdated(dead) {
		return restartNow
	}
	v, at := decideRestart(b.svc.GetSpec().GetTask().GetRestart(), dead, u.tasks, b.isJob(), b.now)
	if v == restartLater {
		b.wakeAt(at)
	}
	return v
}
