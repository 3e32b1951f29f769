package orchestrator

import (
	"testing"
	"time"

	shoalpb "shoal/proto"
)

func TestRestarts(t *testing.T) {
	nodes := []*shoalpb.Node{node("n1"), node("n2")}
	anyDefault := service("a", replMode, 1)
	anyFast := service("a", replMode, 1, restart(condAny, 100, 0, 0))
	noDelay := service("a", replMode, 1, restart(condAny, -1, 0, 0))
	onFailure := service("a", replMode, 1, restart(condFail, -1, 0, 0))
	never := service("a", replMode, 1, restart(condNone, -1, 0, 0))
	max2 := service("a", replMode, 1, restart(condAny, -1, 2, 0))
	max2window := service("a", replMode, 1, restart(condAny, -1, 2, 10_000))
	failedAt := func(id string, svc *shoalpb.Service, d time.Duration, opts ...func(*shoalpb.Task)) *shoalpb.Task {
		return task(id, svc, 1, "n1", failed, append([]func(*shoalpb.Task){at(d), desired(shutdown)}, opts...)...)
	}
	runCases(t, []reconcileCase{
		{
			name:     "failed task waits for the default 5s delay",
			svc:      anyDefault,
			nodes:    nodes,
			tasks:    []*shoalpb.Task{task("a1", anyDefault, 1, "n1", failed)},
			now:      time.Second,
			want:     []string{"wake +5s"},
			unstable: true,
		},
		{
			name:  "failed task is replaced in its slot once the delay passed",
			svc:   anyDefault,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", anyDefault, 1, "n1", failed)},
			now:   5 * time.Second,
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:     "delay_ms is honoured",
			svc:      anyFast,
			nodes:    nodes,
			tasks:    []*shoalpb.Task{task("a1", anyFast, 1, "n1", failed)},
			now:      50 * time.Millisecond,
			want:     []string{"wake +100ms"},
			unstable: true,
		},
		{
			name:  "negative delay_ms is an explicit zero delay",
			svc:   noDelay,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", noDelay, 1, "n1", failed)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "a waiting restart holds its slot: no other slot is filled",
			svc:   service("a", replMode, 2),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", anyDefault, 1, "n1", failed), task("a2", anyDefault, 2, "n2", running)},
			want:  []string{"wake +5s"},
		},
		{
			name:  "ANY restarts a service task that completed",
			svc:   noDelay,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", noDelay, 1, "n1", complete)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "ANY restarts a task that was shut down behind the orchestrator's back",
			svc:   noDelay,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", noDelay, 1, "n1", shutdown)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "ON_FAILURE restarts a failed task",
			svc:   onFailure,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", onFailure, 1, "n1", failed)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "ON_FAILURE restarts a rejected task",
			svc:   onFailure,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", onFailure, 1, "n1", rejected)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "ON_FAILURE does not restart a completed task, and the slot stays counted",
			svc:   onFailure,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", onFailure, 1, "n1", complete)},
			want:  nil,
		},
		{
			name:  "NONE never restarts",
			svc:   never,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", never, 1, "n1", failed)},
			now:   time.Hour,
			want:  nil,
		},
		{
			name:  "a refused slot is the first to go on scale down",
			svc:   service("a", replMode, 1, restart(condNone, -1, 0, 0)),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", never, 1, "n1", failed), task("a2", never, 2, "n2", running)},
			want:  []string{"shutdown a1"},
		},
		{
			name:  "max_attempts: the second failure is still restarted",
			svc:   max2,
			nodes: nodes,
			tasks: []*shoalpb.Task{failedAt("h1", max2, -time.Minute), task("a1", max2, 1, "n1", failed)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "max_attempts: the third failure is not",
			svc:   max2,
			nodes: nodes,
			tasks: []*shoalpb.Task{failedAt("h1", max2, -2*time.Minute), failedAt("h2", max2, -time.Minute),
				task("a1", max2, 1, "n1", failed)},
			want: nil,
		},
		{
			name:  "max_attempts: stops, drains and orphans are no attempts",
			svc:   max2,
			nodes: nodes,
			tasks: []*shoalpb.Task{
				task("h1", max2, 1, "n1", shutdown, desired(shutdown), at(-3*time.Minute)),
				task("h2", max2, 1, "n1", orphaned, desired(shutdown), at(-2*time.Minute)),
				failedAt("h3", max2, -time.Minute),
				task("a1", max2, 1, "n1", failed)},
			want: []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "max_attempts: failures of an older spec do not count",
			svc:   service("a", replMode, 1, restart(condAny, -1, 2, 0), specVersion(2)),
			nodes: nodes,
			tasks: []*shoalpb.Task{failedAt("h1", max2, -2*time.Minute), failedAt("h2", max2, -time.Minute),
				task("a1", max2, 1, "n1", failed, version(2))},
			want: []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "max_attempts within window_ms: old failures fall out",
			svc:   max2window,
			nodes: nodes,
			tasks: []*shoalpb.Task{failedAt("h1", max2window, -time.Minute), failedAt("h2", max2window, -5*time.Second),
				task("a1", max2window, 1, "n1", failed)},
			want: []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "max_attempts within window_ms: too many failures in the window",
			svc:   max2window,
			nodes: nodes,
			tasks: []*shoalpb.Task{failedAt("h1", max2window, -8*time.Second), failedAt("h2", max2window, -5*time.Second),
				task("a1", max2window, 1, "n1", failed)},
			now:  time.Hour, // the window ends at the failure, not now
			want: nil,
		},
		{
			name:  "a spec update replaces a refused slot at once",
			svc:   service("a", replMode, 1, restart(condNone, 0, 0, 0), specVersion(2)),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", never, 1, "n1", failed)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "a spec update does not wait for the restart delay",
			svc:   service("a", replMode, 1, specVersion(2)),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", anyDefault, 1, "n1", failed)},
			want:  []string{"create slot 1", "shutdown a1"},
		},
		{
			name:  "a leftover undecided task next to a live one becomes history",
			svc:   noDelay,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("a1", noDelay, 1, "n1", failed), task("a2", noDelay, 1, "n2", running)},
			want:  []string{"shutdown a1"},
		},
	})
}

func TestRestartDelay(t *testing.T) {
	for _, c := range []struct {
		ms   int64
		want time.Duration
	}{{0, DefaultRestartDelay}, {-1, 0}, {-5, 0}, {1, time.Millisecond}, {2500, 2500 * time.Millisecond}} {
		if got := restartDelay(&shoalpb.RestartPolicy{DelayMs: c.ms}); got != c.want {
			t.Errorf("delay_ms %d: %v, want %v", c.ms, got, c.want)
		}
	}
	if got := restartDelay(nil); got != DefaultRestartDelay {
		t.Errorf("no policy: %v, want %v", got, DefaultRestartDelay)
	}
}
