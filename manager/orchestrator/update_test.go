package orchestrator

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

const (
	updating        = shoalpb.UpdateState_UPDATE_STATE_UPDATING
	paused          = shoalpb.UpdateState_UPDATE_STATE_PAUSED
	canaryState     = shoalpb.UpdateState_UPDATE_STATE_CANARY
	rollbackStarted = shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED
	startFirst      = shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST
	actContinue     = shoalpb.FailureAction_FAILURE_ACTION_CONTINUE
	actRollback     = shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK
)

// rolloutStart is when the rollouts of the fixtures started.
var rolloutStart = t0.Add(-30 * time.Minute)

// rolling returns version 2 of a replicated service of n replicas in state
// (from version 1, started at rolloutStart) under cfg.
func rolling(n uint64, state shoalpb.UpdateState, cfg *shoalpb.UpdateConfig) *shoalpb.Service {
	v1 := service("a", replMode, n)
	s := service("a", replMode, n, specVersion(2))
	s.Spec.UpdateConfig = cfg
	s.PreviousSpecs = []*shoalpb.VersionedSpec{{Version: 1, Spec: v1.Spec}}
	s.UpdateStatus = &shoalpb.UpdateStatus{State: state, StartedAt: timestamppb.New(rolloutStart), FromVersion: 1, ToVersion: 2}
	return s
}

// promoted marks the service's canaries promoted.
func promoted(s *shoalpb.Service) *shoalpb.Service {
	s.UpdateStatus.Promoted = true
	return s
}

func failedWith(err string) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) { t.Status.Err = err }
}

func TestRollingUpdate(t *testing.T) {
	nodes := []*shoalpb.Node{node("n1"), node("n2"), node("n3")}
	v1 := service("a", replMode, 3)
	one := &shoalpb.UpdateConfig{Parallelism: 1, MonitorMs: 5000}
	cfg := func(fn func(c *shoalpb.UpdateConfig)) *shoalpb.UpdateConfig {
		c := &shoalpb.UpdateConfig{Parallelism: 1, MonitorMs: 5000}
		fn(c)
		return c
	}
	// old: a ready task of version 1; cur: a replacement of version 2.
	old := func(id string, slot uint64, node string, opts ...func(*shoalpb.Task)) *shoalpb.Task {
		return task(id, v1, slot, node, running, append([]func(*shoalpb.Task){ready}, opts...)...)
	}
	gone := func(id string, slot uint64, node string) *shoalpb.Task {
		return task(id, v1, slot, node, shutdown, desired(shutdown))
	}
	cur := func(svc *shoalpb.Service, id string, slot uint64, node string, state shoalpb.TaskState, opts ...func(*shoalpb.Task)) *shoalpb.Task {
		return task(id, svc, slot, node, state, append([]func(*shoalpb.Task){created(-time.Minute)}, opts...)...)
	}
	threeOld := []*shoalpb.Task{old("a1", 1, "n1"), old("a2", 2, "n2"), old("a3", 3, "n3")}
	firstDone := func(svc *shoalpb.Service, opts ...func(*shoalpb.Task)) []*shoalpb.Task {
		return []*shoalpb.Task{gone("a1", 1, "n1"), cur(svc, "b1", 1, "n1", running, opts...), old("a2", 2, "n2"), old("a3", 3, "n3")}
	}
	const failure = "svc-a.1.b1: health check failed 3 times: boom"
	broken := failedWith("health check failed 3 times: boom")

	upd := rolling(3, updating, one)
	startFirstCfg := cfg(func(c *shoalpb.UpdateConfig) { c.Order = startFirst })
	sf := rolling(3, updating, startFirstCfg)
	canary := cfg(func(c *shoalpb.UpdateConfig) { c.Canary, c.AutoPromoteMs = 1, 30000 })
	rolledBack := service("a", replMode, 3, func(s *shoalpb.Service) { s.SpecVersion = 3 })
	rolledBack.UpdateStatus = &shoalpb.UpdateStatus{State: rollbackStarted, StartedAt: timestamppb.New(rolloutStart),
		FromVersion: 2, ToVersion: 3, Message: "update rolled back: x"}
	runCases(t, []reconcileCase{
		{
			name:  "stop-first: one unit at a time, the old task stops as its replacement is created",
			svc:   upd,
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "a replacement that runs but is not ready holds the next unit (until it counts as failed)",
			svc:   upd,
			nodes: nodes,
			tasks: firstDone(upd),
			want:  []string{"wake +3m5s"},
		},
		{
			name:  "once the replacement is ready, the next unit goes",
			svc:   upd,
			nodes: nodes,
			tasks: firstDone(upd, ready),
			want:  []string{"create slot 2", "shutdown a2"},
		},
		{
			name:  "parallelism 2",
			svc:   rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.Parallelism = 2 })),
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 1", "create slot 2", "shutdown a1", "shutdown a2"},
		},
		{
			name:  "parallelism 0: every unit at once",
			svc:   rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.Parallelism = 0 })),
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 1", "create slot 2", "create slot 3", "shutdown a1", "shutdown a2", "shutdown a3"},
		},
		{
			name:  "start-first: the replacement starts beside the old task",
			svc:   sf,
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 1"},
		},
		{
			name:  "start-first: the unit holds both while the replacement is not ready",
			svc:   sf,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1"), cur(sf, "b1", 1, "n2", running), old("a2", 2, "n2"), old("a3", 3, "n3")},
			want:  []string{"wake +3m5s"},
		},
		{
			name:  "start-first: the old task stops once the replacement is ready, and the next unit starts",
			svc:   sf,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1"), cur(sf, "b1", 1, "n2", running, ready), old("a2", 2, "n2"), old("a3", 3, "n3")},
			want:  []string{"create slot 2", "shutdown a1"},
		},
		{
			name:  "start-first: an old task that is not ready serves nothing and stops first",
			svc:   sf,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", v1, 1, "n1", running), old("a2", 2, "n2"), old("a3", 3, "n3")},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "delay: the next unit waits delay_ms after the last replacement became ready",
			svc:   rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.DelayMs = 10000 })),
			nodes: nodes,
			tasks: firstDone(upd, ready),
			now:   2 * time.Second,
			want:  []string{"wake +10s"},
		},
		{
			name:  "delay passed",
			svc:   rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.DelayMs = 10000 })),
			nodes: nodes,
			tasks: firstDone(upd, ready),
			now:   10 * time.Second,
			want:  []string{"create slot 2", "shutdown a2"},
		},
		{
			name:  "every unit done: completed monitor_ms after the last became ready",
			svc:   upd,
			nodes: nodes,
			tasks: []*shoalpb.Task{cur(upd, "b1", 1, "n1", running, ready), cur(upd, "b2", 2, "n2", running, ready),
				cur(upd, "b3", 3, "n3", running, ready, at(time.Second))},
			now:  3 * time.Second,
			want: []string{"wake +6s"},
		},
		{
			name:  "monitor passed",
			svc:   upd,
			nodes: nodes,
			tasks: []*shoalpb.Task{cur(upd, "b1", 1, "n1", running, ready), cur(upd, "b2", 2, "n2", running, ready),
				cur(upd, "b3", 3, "n3", running, ready, at(time.Second))},
			now:  6 * time.Second,
			want: []string{"service v2 completed"},
		},
		{
			name:  "failure action pause: a failed replacement pauses the update (its unit restarts as usual)",
			svc:   upd,
			nodes: nodes,
			tasks: firstDone(upd, func(t *shoalpb.Task) { t.Status.State = failed }, broken),
			want: []string{"service v2 paused failed [b1]: update paused: 1 of 3 replacements failed (max failure ratio 0): " + failure,
				"wake +5s"},
		},
		{
			name:  "paused: nothing more is replaced",
			svc:   rolling(3, paused, one),
			nodes: nodes,
			tasks: firstDone(upd, ready),
			want:  nil,
		},
		{
			name:  "failure action continue: the failure is recorded and the update goes on",
			svc:   rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.FailureAction = actContinue })),
			nodes: nodes,
			tasks: firstDone(upd, func(t *shoalpb.Task) { t.Status.State = failed }, broken),
			want: []string{"create slot 2",
				"service v2 updating failed [b1]: update continues: 1 of 3 replacements failed (max failure ratio 0): " + failure,
				"shutdown a2", "wake +5s"},
		},
		{
			name:  "within max_failure_ratio the update goes on",
			svc:   rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.MaxFailureRatio = 0.5 })),
			nodes: nodes,
			tasks: firstDone(upd, func(t *shoalpb.Task) { t.Status.State = rejected }, broken),
			want: []string{"create slot 2",
				"service v2 updating failed [b1]: update continues: 1 of 3 replacements failed (max failure ratio 0.5): " + failure,
				"shutdown a2", "wake +5s"},
		},
		{
			name: "a failure already recorded is not counted again",
			svc: func() *shoalpb.Service {
				s := rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.MaxFailureRatio = 0.5 }))
				s.UpdateStatus.FailedTasks = []string{"b1"}
				return s
			}(),
			nodes: nodes,
			tasks: firstDone(upd, func(t *shoalpb.Task) { t.Status.State = failed }, broken),
			want:  []string{"create slot 2", "shutdown a2", "wake +5s"},
		},
		{
			name:  "failure action rollback: the service goes back to the spec the update left, nothing else in the plan",
			svc:   rolling(3, updating, cfg(func(c *shoalpb.UpdateConfig) { c.FailureAction = actRollback })),
			nodes: nodes,
			tasks: firstDone(upd, func(t *shoalpb.Task) { t.Status.State = failed }, broken),
			want: []string{"service v3 rollback_started: update rolled back: 1 of 3 replacements failed (max failure ratio 0): " +
				failure},
			unstable: true, // the next plan rolls back
		},
		{
			name:  "a rollback replaces the units that hold the failed spec",
			svc:   rolledBack,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("b1", upd, 1, "n1", running, ready, created(-time.Minute)), old("a2", 2, "n2"), old("a3", 3, "n3")},
			want:  []string{"create slot 1", "shutdown b1"},
		},
		{
			name:  "a rollback completes (its message stays)",
			svc:   rolledBack,
			nodes: nodes,
			tasks: []*shoalpb.Task{cur(rolledBack, "c1", 1, "n1", running, ready), old("a2", 2, "n2"), old("a3", 3, "n3")},
			now:   5 * time.Second,
			want:  []string{"service v3 rollback_completed: update rolled back: x"},
		},
		{
			name:  "a failure during a rollback pauses it",
			svc:   rolledBack,
			nodes: nodes,
			tasks: []*shoalpb.Task{cur(rolledBack, "c1", 1, "n1", failed, broken), old("a2", 2, "n2"), old("a3", 3, "n3")},
			want: []string{"service v3 rollback_paused failed [c1]: rollback paused: 1 of 3 replacements failed (max failure ratio 0): svc-a.1.c1: health check failed 3 times: boom",
				"wake +5s"},
		},
		{
			name:  "start-first: a unit whose replacement failed keeps its old task",
			svc:   sf,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1"), cur(sf, "b1", 1, "n2", failed, broken), old("a2", 2, "n2"), old("a3", 3, "n3")},
			want: []string{"service v2 paused failed [b1]: update paused: 1 of 3 replacements failed (max failure ratio 0): svc-a.1.b1: health check failed 3 times: boom",
				"shutdown b1"},
		},
		{
			name:  "a replacement that never becomes ready counts as failed (monitor + 3 × (interval + timeout))",
			svc:   upd,
			nodes: nodes,
			tasks: firstDone(upd),
			now:   3*time.Minute + 5*time.Second,
			want: []string{"service v2 paused failed [b1]: update paused: 1 of 3 replacements failed (max failure ratio 0): " +
				"svc-a.1.b1: not ready 3m5s after it started running"},
		},
		{
			// Slot 1 was done: its refill is not a step of the rollout,
			// which goes on with slot 2.
			name:  "a replacement lost with its node is replaced, not counted as failed",
			svc:   upd,
			nodes: nodes,
			tasks: firstDone(upd, desired(shutdown), func(t *shoalpb.Task) { t.Status.State, t.Status.Message = orphaned, msgNodeDown }),
			want:  []string{"create slot 1", "create slot 2", "shutdown a2"},
		},
		{
			name:  "canary: N units get replacements beside their old tasks, nothing else moves",
			svc:   rolling(3, updating, canary),
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 1", "service v2 canary"},
		},
		{
			name:  "canaries ready: promoted auto_promote_ms later",
			svc:   rolling(3, canaryState, canary),
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1"), cur(upd, "b1", 1, "n2", running, ready), old("a2", 2, "n2"), old("a3", 3, "n3")},
			now:   10 * time.Second,
			want:  []string{"wake +30s"},
		},
		{
			name:     "auto-promotion",
			svc:      rolling(3, canaryState, canary),
			nodes:    nodes,
			tasks:    []*shoalpb.Task{old("a1", 1, "n1"), cur(upd, "b1", 1, "n2", running, ready), old("a2", 2, "n2"), old("a3", 3, "n3")},
			now:      30 * time.Second,
			want:     []string{"service v2 updating promoted: canaries promoted: ready for 30s"},
			unstable: true, // the next plan rolls on
		},
		{
			name:  "without auto_promote_ms the canaries wait for a promotion by hand",
			svc:   rolling(3, canaryState, cfg(func(c *shoalpb.UpdateConfig) { c.Canary = 1 })),
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1"), cur(upd, "b1", 1, "n2", running, ready), old("a2", 2, "n2"), old("a3", 3, "n3")},
			now:   time.Hour,
			want:  nil,
		},
		{
			name:  "after promotion the canary's old task stops and the rest rolls",
			svc:   promoted(rolling(3, updating, canary)),
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1"), cur(upd, "b1", 1, "n2", running, ready), old("a2", 2, "n2"), old("a3", 3, "n3")},
			want:  []string{"create slot 2", "shutdown a1", "shutdown a2"},
		},
		{
			name:  "a change that leaves the task spec alone (a scale) replaces nothing",
			svc:   service("a", replMode, 4, func(s *shoalpb.Service) { s.SpecVersion = 2 }),
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 4"},
		},
		{
			name:  "with no update_status (a rollout nobody started), outdated tasks are still replaced",
			svc:   service("a", replMode, 3, specVersion(2)),
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "outdated tasks not yet running go first",
			svc:   upd,
			nodes: nodes,
			tasks: []*shoalpb.Task{old("a1", 1, "n1"), old("a2", 2, "n2"), task("a3", v1, 3, "", pending)},
			want:  []string{"create slot 3", "shutdown a3"},
		},
		{
			name:  "new slots of a scale up come with the new spec and do not hold the rollout",
			svc:   rolling(4, updating, one),
			nodes: nodes,
			tasks: threeOld,
			want:  []string{"create slot 1", "create slot 4", "shutdown a1"},
		},
	})
}

func TestGlobalRollingUpdate(t *testing.T) {
	v1 := service("g", globMode, 0)
	v2 := service("g", globMode, 0, specVersion(2))
	v2.Spec.UpdateConfig = &shoalpb.UpdateConfig{Parallelism: 0, Order: startFirst, MonitorMs: 1000}
	v2.UpdateStatus = &shoalpb.UpdateStatus{State: updating, StartedAt: timestamppb.New(rolloutStart), FromVersion: 1, ToVersion: 2}
	nodes := []*shoalpb.Node{node("n1"), node("n2")}
	runCases(t, []reconcileCase{
		{
			name:  "parallelism 0, start-first: every node gets its replacement beside the old task",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("g1", v1, 0, "n1", running, ready), task("g2", v1, 0, "n2", running, ready)},
			want:  []string{"create on n1", "create on n2"},
		},
		{
			name:  "the old tasks stop as their replacements become ready",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("g1", v1, 0, "n1", running, ready), task("g2", v1, 0, "n2", running, ready),
				task("h1", v2, 0, "n1", running, ready, created(-time.Minute)), task("h2", v2, 0, "n2", starting, created(-time.Minute))},
			want: []string{"shutdown g1"},
		},
		{
			name:  "completed when every node's task is current and ready",
			svc:   v2,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("h1", v2, 0, "n1", running, ready, created(-time.Minute)),
				task("h2", v2, 0, "n2", running, ready, created(-time.Minute))},
			now:  time.Second,
			want: []string{"service v2 completed"},
		},
	})
}
