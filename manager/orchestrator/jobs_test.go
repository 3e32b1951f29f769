package orchestrator

import (
	"testing"
	"time"

	shoalpb "shoal/proto"
)

func TestReplicatedJob(t *testing.T) {
	nodes := []*shoalpb.Node{node("n1"), node("n2")}
	job := service("j", rjobMode, 4, maxConcurrent(2), restart(condAny, -1, 0, 0))
	next := service("j", rjobMode, 4, maxConcurrent(2), iteration(2))
	runCases(t, []reconcileCase{
		{
			name:  "starts at most max_concurrent tasks, lowest slots first",
			svc:   job,
			nodes: nodes,
			want:  []string{"create slot 1", "create slot 2"},
		},
		{
			name:  "max_concurrent 0 means replicas",
			svc:   service("j", rjobMode, 3),
			nodes: nodes,
			want:  []string{"create slot 1", "create slot 2", "create slot 3"},
		},
		{
			name:  "waits while max_concurrent tasks run",
			svc:   job,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", running), task("j2", job, 2, "n2", pending)},
			want:  nil,
		},
		{
			name:  "a completion frees room for the next slot and is never run again",
			svc:   job,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", complete), task("j2", job, 2, "n2", running)},
			want:  []string{"create slot 3"},
		},
		{
			name:  "done when every slot completed",
			svc:   job,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", complete), task("j2", job, 2, "n2", complete),
				task("j3", job, 3, "n1", complete), task("j4", job, 4, "n2", complete)},
			now:  time.Hour,
			want: nil,
		},
		{
			name:  "a failed task is restarted in its slot (ANY)",
			svc:   job,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", failed), task("j2", job, 2, "n2", complete),
				task("j3", job, 3, "n1", complete), task("j4", job, 4, "n2", complete)},
			want: []string{"create slot 1", "shutdown j1"},
		},
		{
			name:  "restarts wait for room too",
			svc:   job,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", failed), task("j2", job, 2, "n2", running),
				task("j3", job, 3, "n1", running)},
			want: nil,
		},
		{
			name:  "NONE leaves a failed slot failed",
			svc:   service("j", rjobMode, 1, restart(condNone, -1, 0, 0)),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", failed)},
			want:  nil,
		},
		{
			name:  "an orphaned task's slot is refilled at once",
			svc:   job,
			nodes: []*shoalpb.Node{node("n1"), node("n2", isDown)},
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", running), task("j2", job, 2, "n2", running)},
			want:  []string{"create slot 2", "orphan j2: node down"},
		},
		{
			name:  "a new iteration shuts down the old run and starts again",
			svc:   next,
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", complete), task("j2", job, 2, "n2", running),
				task("j3", job, 3, "n1", failed)},
			want: []string{"create slot 1", "create slot 2", "shutdown j2"},
		},
		{
			name:  "a lower replica count retires the extra slots",
			svc:   service("j", rjobMode, 1),
			nodes: nodes,
			tasks: []*shoalpb.Task{task("j1", job, 1, "n1", running), task("j2", job, 2, "n2", running)},
			want:  []string{"shutdown j2"},
		},
	})
}

func TestGlobalJob(t *testing.T) {
	job := service("j", gjobMode, 0, restart(condFail, -1, 0, 0))
	runCases(t, []reconcileCase{
		{
			name:  "one task per eligible node",
			svc:   job,
			nodes: []*shoalpb.Node{node("n1"), node("n2"), node("n3", isPaused), node("n4", isDown)},
			want:  []string{"create on n1", "create on n2"},
		},
		{
			name:  "a node that completed is done; a failed one retries",
			svc:   job,
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{task("j1", job, 0, "n1", complete), task("j2", job, 0, "n2", failed)},
			want:  []string{"create on n2", "shutdown j2"},
		},
		{
			name:  "a new iteration runs again everywhere",
			svc:   service("j", gjobMode, 0, iteration(2)),
			nodes: []*shoalpb.Node{node("n1"), node("n2")},
			tasks: []*shoalpb.Task{task("j1", job, 0, "n1", complete), task("j2", job, 0, "n2", running)},
			want:  []string{"create on n1", "create on n2", "shutdown j2"},
		},
	})
}
