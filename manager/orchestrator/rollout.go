package orchestrator

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
	"shoal/scheduler"
)

// A rollout's progress is Service.update_status (docs/releases.md): the
// orchestrator reads it with the tasks and writes the next one in its plan
// (Plan.Service), so nothing about a rollout lives in a leader's memory.
//
// Times come from the store: update_status.started_at (the manager that
// started the rollout), tasks' created_at (the orchestrator), and task
// status timestamps (the agents). A task's "ready since" is the timestamp of
// its status: the agent stamps the report in which its readiness changes.

// maxNamedFailures bounds the failed tasks a status message names.
const maxNamedFailures = 3

// maxRecordedFailures bounds failed_tasks: a rollout that goes on despite
// failures (failure action continue) while its replacements keep failing and
// restarting stops recording them there, so the service does not grow
// without end.
const maxRecordedFailures = 100

// rollout is a service's rollout as one plan sees it: the config it runs
// under, the stored update_status, and the one the plan writes.
type rollout struct {
	cfg     *shoalpb.UpdateConfig
	stored  *shoalpb.UpdateStatus // nil before the first rollout
	next    *shoalpb.UpdateStatus // nil while unchanged
	started time.Time             // zero before the first rollout
	failed  map[string]bool       // failed_tasks; nil while the rollout is not active
}

func newRollout(svc *shoalpb.Service) *rollout {
	st := svc.GetUpdateStatus()
	r := &rollout{cfg: servicespec.RolloutConfig(svc), stored: st}
	if st.GetStartedAt() != nil {
		r.started = st.GetStartedAt().AsTime()
	}
	if r.active() {
		r.failed = make(map[string]bool, len(st.GetFailedTasks()))
		for _, id := range st.GetFailedTasks() {
			r.failed[id] = true
		}
	}
	return r
}

// status is the update_status as the plan leaves it.
func (r *rollout) status() *shoalpb.UpdateStatus {
	if r.next != nil {
		return r.next
	}
	return r.stored
}

// change returns the update_status the plan writes, to modify.
func (r *rollout) change() *shoalpb.UpdateStatus {
	if r.next == nil {
		r.next = proto.Clone(r.stored).(*shoalpb.UpdateStatus)
	}
	return r.next
}

func (r *rollout) state() shoalpb.UpdateState { return r.status().GetState() }

// active reports whether the orchestrator tracks the rollout: it counts
// failures and completes it.
func (r *rollout) active() bool {
	switch r.state() {
	case shoalpb.UpdateState_UPDATE_STATE_UPDATING, shoalpb.UpdateState_UPDATE_STATE_CANARY,
		shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED:
		return true
	}
	return false
}

// moves reports whether outdated tasks may be replaced: always but while
// paused. Before the first rollout and after one completed, a task left
// outdated (a rollout that started in no status) is still replaced, so the
// service converges, but nothing is tracked.
func (r *rollout) moves() bool {
	switch r.state() {
	case shoalpb.UpdateState_UPDATE_STATE_PAUSED, shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:
		return false
	}
	return true
}

// canaryPhase reports whether the rollout's canaries wait for promotion:
// update_config.canary is set, and the update is under way or paused, not
// yet promoted.
func (r *rollout) canaryPhase() bool {
	if r.cfg.GetCanary() == 0 || r.status().GetPromoted() {
		return false
	}
	switch r.state() {
	case shoalpb.UpdateState_UPDATE_STATE_UPDATING, shoalpb.UpdateState_UPDATE_STATE_CANARY,
		shoalpb.UpdateState_UPDATE_STATE_PAUSED:
		return true
	}
	return false
}

// since reports whether t was created since the rollout started: a task of
// the current spec that did is a replacement.
func (r *rollout) since(t *shoalpb.Task) bool {
	return !t.GetMeta().GetCreatedAt().AsTime().Before(r.started)
}

// kind names the rollout in messages.
func (r *rollout) kind() string {
	switch r.state() {
	case shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED, shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED,
		shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED:
		return "rollback"
	}
	return "update"
}

// judgeFailures records the replacements of an active rollout that failed
// since the last plan in failed_tasks and, when failures / units exceeds
// max_failure_ratio, takes the failure action: pause, continue, or (an
// update) roll back. It reports whether it rolled back: then the plan is
// only the service's write, and the next pass rolls to the spec written.
//
// A replacement (a task of the current task spec created since the rollout
// started) fails when it ends on its own (FAILED, REJECTED, COMPLETE; a
// failing health check ends it FAILED), or when it runs without becoming
// ready for longer than notReadyLimit. A replacement lost with its node
// (ORPHANED) says nothing of the release: its unit is refilled and the
// rollout goes on. Every failure while the rollout is under way counts:
// it completes only monitor_ms after its last replacement became ready.
func (b *builder) judgeFailures(tasks []*shoalpb.Task) (rolledBack bool) {
	r := b.ro
	if !r.active() {
		return false
	}
	b.plan.RunningMatters = true // readiness and deadlines decide
	var why []string
	var fresh []string
	for _, t := range tasks {
		if r.failed[t.GetId()] || !r.since(t) {
			continue
		}
		if reason := b.failure(t); reason != "" {
			fresh = append(fresh, t.GetId())
			why = append(why, reason)
		}
	}
	room := maxRecordedFailures - len(r.status().GetFailedTasks())
	if len(fresh) == 0 || room <= 0 {
		return false
	}
	fresh, why = fresh[:min(room, len(fresh))], why[:min(room, len(why))]
	kind := r.kind()
	st := r.change()
	for _, id := range fresh {
		st.FailedTasks = append(st.FailedTasks, id)
		r.failed[id] = true
	}
	units := max(1, b.unitCount())
	ratio := r.cfg.GetMaxFailureRatio()
	if len(why) > maxNamedFailures {
		why = append(why[:maxNamedFailures], fmt.Sprintf("and %d more", len(why)-maxNamedFailures))
	}
	what := fmt.Sprintf("%d of %d replacements failed (max failure ratio %g): %s",
		len(st.FailedTasks), units, ratio, strings.Join(why, "; "))
	exceeded := float64(len(st.FailedTasks))/float64(units) > float64(ratio)
	switch action := r.cfg.GetFailureAction(); {
	case !exceeded || action == shoalpb.FailureAction_FAILURE_ACTION_CONTINUE:
		st.Message = kind + " continues: " + what
	case action == shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK && kind == "update":
		upd, err := servicespec.Rollback(b.svc, st.GetFromVersion(), "update rolled back: "+what, b.now)
		if err == nil {
			b.plan.Service = upd
			return true
		}
		st.State = shoalpb.UpdateState_UPDATE_STATE_PAUSED
		st.Message = fmt.Sprintf("update paused: %s; cannot roll back: %v", what, err)
	default:
		st.State = shoalpb.UpdateState_UPDATE_STATE_PAUSED
		if kind == "rollback" {
			st.State = shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED
		}
		st.Message = kind + " paused: " + what
	}
	return false
}

// failure says why t, a task created since the rollout started, counts as
// a failed replacement ("web.2.x1: health check failed 3 times: …"), or ""
// if it does not (yet: the plan then wakes when it would for not becoming
// ready). The task spec is compared last: most tasks are fine.
func (b *builder) failure(t *shoalpb.Task) string {
	st := t.GetStatus()
	var reason string
	switch {
	case isFailure(t):
		reason = st.GetErr()
		if reason == "" {
			reason = st.GetMessage()
		}
		if reason == "" {
			reason = strings.ToLower(strings.TrimPrefix(st.GetState().String(), "TASK_STATE_"))
		}
	case isRunnable(t) && isRunning(t) && !st.GetReady():
		if !sameTaskSpec(t, b.svc.GetSpec().GetTask()) {
			return ""
		}
		limit := b.notReadyLimit(t)
		if at := st.GetTimestamp().AsTime().Add(limit); b.now.Before(at) {
			b.wakeAt(at)
			return ""
		}
		return fmt.Sprintf("%s: not ready %s after it started running", servicespec.TaskName(t), limit)
	default:
		return ""
	}
	if !sameTaskSpec(t, b.svc.GetSpec().GetTask()) {
		return ""
	}
	return servicespec.TaskName(t) + ": " + reason
}

// notReadyLimit is how long replacement t may run without being ready
// before it counts as failed: monitor_ms, plus the start period and
// retries × (interval + timeout) of the check that decides its readiness
// (its readiness check, else its health check, else a check with the
// default timings, as the image may bring one the manager cannot see).
func (b *builder) notReadyLimit(t *shoalpb.Task) time.Duration {
	c := t.GetSpec().GetContainer()
	hc := c.GetReadiness()
	if len(hc.GetTest()) == 0 && hc.GetHttpPort() == 0 && hc.GetTcpPort() == 0 {
		hc = c.GetHealthcheck()
	}
	orDefault := func(ms int64, def time.Duration) time.Duration {
		if ms <= 0 {
			return def
		}
		return time.Duration(ms) * time.Millisecond
	}
	retries := time.Duration(hc.GetRetries())
	if retries == 0 {
		retries = servicespec.DefaultCheckRetries
	}
	return time.Duration(b.ro.cfg.GetMonitorMs())*time.Millisecond + orDefault(hc.GetStartPeriodMs(), 0) +
		retries*(orDefault(hc.GetIntervalMs(), servicespec.DefaultCheckInterval)+orDefault(hc.GetTimeoutMs(), servicespec.DefaultCheckTimeout))
}

// unitCount is the number of units the service wants: its replicas, or for
// a global service the nodes that may run it.
func (b *builder) unitCount() int {
	if b.svc.GetSpec().GetMode() != shoalpb.ServiceMode_SERVICE_MODE_GLOBAL {
		return int(b.svc.GetSpec().GetReplicas())
	}
	n := 0
	for _, node := range b.nodes {
		if conditionOf(node, b.now) == nodeUsable && scheduler.Eligible(node, b.svc.GetSpec().GetTask()) {
			n++
		}
	}
	return n
}

// complete ends an update or rollback under way whose units are all done,
// monitor_ms after the last replacement became ready (lastReady; the start
// of the rollout when nothing was replaced).
func (b *builder) complete(lastReady time.Time) {
	r := b.ro
	var done shoalpb.UpdateState
	switch r.state() {
	case shoalpb.UpdateState_UPDATE_STATE_UPDATING:
		done = shoalpb.UpdateState_UPDATE_STATE_COMPLETED
	case shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED:
		done = shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED
	default:
		return
	}
	if lastReady.Before(r.started) {
		lastReady = r.started
	}
	at := lastReady.Add(time.Duration(r.cfg.GetMonitorMs()) * time.Millisecond)
	if b.now.Before(at) {
		b.wakeAt(at)
		return
	}
	st := r.change()
	st.State = done
	st.CompletedAt = timestamppb.New(b.now)
}

// writeStatus puts the service with its new update_status in the plan when
// the plan changed it.
func (b *builder) writeStatus() {
	if b.ro == nil || b.ro.next == nil || proto.Equal(b.ro.next, b.ro.stored) {
		return
	}
	upd := proto.Clone(b.svc).(*shoalpb.Service)
	upd.UpdateStatus = b.ro.next
	b.plan.Service = upd
}
