package orchestrator

import (
	"testing"
	"time"

	shoalpb "shoal/proto"
)

func TestRemovedService(t *testing.T) {
	svc := service("a", replMode, 1)
	runCases(t, []reconcileCase{
		{
			name:  "tasks that may run are set to REMOVE; the rest are deleted",
			nodes: []*shoalpb.Node{node("n1"), node("n2", isDown)},
			tasks: []*shoalpb.Task{
				task("a1", svc, 1, "n1", running),
				task("a2", svc, 2, "", pending),
				task("a3", svc, 3, "n2", running),
				task("a4", svc, 4, "n1", failed, desired(shutdown)),
				task("a5", svc, 5, "n9", running),
				task("a6", svc, 6, "n1", running, desired(shutdown)),
			},
			want:     []string{"delete a2", "delete a3", "delete a4", "delete a5", "remove a1", "remove a6"},
			unstable: true,
		},
		{
			name:  "a REMOVE task is deleted once it stopped",
			nodes: []*shoalpb.Node{node("n1")},
			tasks: []*shoalpb.Task{task("a1", svc, 1, "n1", running, desired(remove)), task("a2", svc, 2, "n1", shutdown, desired(remove))},
			want:  []string{"delete a2"},
			// a1 waits for its agent.
		},
	})
}

func TestHistory(t *testing.T) {
	svc := service("a", replMode, 1)
	sixAttempts := service("a", replMode, 1, restart(condAny, 0, 6, 0))
	nodes := []*shoalpb.Node{node("n1"), node("n2")}
	runCases(t, []reconcileCase{
		{
			name:  "each slot keeps the newest 5 dead tasks by default",
			svc:   service("a", replMode, 2),
			nodes: nodes,
			tasks: join([]*shoalpb.Task{task("a1", svc, 1, "n1", running), task("b1", svc, 2, "n2", running)},
				history("h", svc, 1, "n1", 7), history("g", svc, 2, "n2", 5)),
			want: []string{"delete h6", "delete h7"},
		},
		{
			name:     "task_history_limit from the cluster",
			svc:      svc,
			nodes:    nodes,
			settings: SettingsOf(&shoalpb.Cluster{Spec: &shoalpb.ClusterSpec{TaskHistoryLimit: 2}}),
			tasks:    join([]*shoalpb.Task{task("a1", svc, 1, "n1", running)}, history("h", svc, 1, "n1", 4)),
			want:     []string{"delete h3", "delete h4"},
		},
		{
			name:  "max_attempts raises the limit so attempts stay countable",
			svc:   sixAttempts,
			nodes: nodes,
			tasks: join([]*shoalpb.Task{task("a1", sixAttempts, 1, "n1", running)}, history("h", sixAttempts, 1, "n1", 9)),
			want:  []string{"delete h8", "delete h9"},
		},
		{
			name:  "tasks orphaned now count as the newest",
			svc:   svc,
			nodes: []*shoalpb.Node{node("n1", isDown), node("n2")},
			tasks: join([]*shoalpb.Task{task("a1", svc, 1, "n1", running)}, history("h", svc, 1, "n1", 5)),
			want:  []string{"create slot 1", "delete h5", "orphan a1: node down"},
		},
		{
			name:  "slots of a scaled-down service keep their history too",
			svc:   service("a", replMode, 0),
			nodes: nodes,
			tasks: history("h", svc, 3, "n1", 6),
			want:  []string{"delete h6"},
		},
		{
			name:     "a pending restart is never deleted",
			svc:      svc,
			nodes:    nodes,
			settings: Settings{TaskHistoryLimit: 1},
			tasks:    join([]*shoalpb.Task{task("a1", svc, 1, "n1", failed, at(-3*time.Minute))}, history("h", svc, 1, "n1", 2)),
			now:      -3*time.Minute + time.Second,
			want:     []string{"delete h2", "wake -2m55s"},
		},
		{
			name:     "a job's completion of the current iteration is never deleted",
			svc:      service("j", rjobMode, 1),
			nodes:    nodes,
			settings: Settings{TaskHistoryLimit: 1},
			tasks: join([]*shoalpb.Task{task("j1", service("j", rjobMode, 1), 1, "n1", complete, at(-time.Hour))},
				history("h", service("j", rjobMode, 1), 1, "n1", 2)),
			want: []string{"delete h2"},
		},
		{
			name:     "global services keep history per node",
			svc:      service("g", globMode, 0),
			nodes:    nodes,
			settings: Settings{TaskHistoryLimit: 1},
			tasks: join([]*shoalpb.Task{task("g1", service("g", globMode, 0), 0, "n1", running),
				task("g2", service("g", globMode, 0), 0, "n2", running)},
				history("h", service("g", globMode, 0), 0, "n1", 2), history("k", service("g", globMode, 0), 0, "n2", 1)),
			want: []string{"delete h2"},
		},
		{
			name: "global services keep no history for removed nodes",
			svc:  service("g", globMode, 0),
			tasks: join(history("h", service("g", globMode, 0), 0, "n9", 2),
				[]*shoalpb.Task{task("g9", service("g", globMode, 0), 0, "n9", failed)}),
			want:     []string{"delete h1", "delete h2", "shutdown g9"},
			unstable: true, // g9 goes on the next pass
		},
	})
}

func TestSettings(t *testing.T) {
	if got := SettingsOf(nil).historyLimit(); got != DefaultTaskHistoryLimit {
		t.Errorf("no cluster: history limit %d, want %d", got, DefaultTaskHistoryLimit)
	}
	if got := SettingsOf(&shoalpb.Cluster{Spec: &shoalpb.ClusterSpec{TaskHistoryLimit: 9}}).historyLimit(); got != 9 {
		t.Errorf("history limit %d, want 9", got)
	}
}
