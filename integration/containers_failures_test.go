package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// What happens to containers when things fail, on one manager and one
// worker: each subtest uses a service of its own on the shared cluster.
func TestContainerFailures(t *testing.T) {
	c := containerCluster(t, 1, 1)
	m, w := c.Managers[0], c.Workers[0]
	api := controlAPI(t, m)
	loadImages(t, m, "words-db:v1", "words-web:v1")
	onWorker := "node.id==" + w.ID(t)

	t.Run("killed container is replaced and its volume's data survives", func(t *testing.T) {
		mustShoal(t, m, "service", "create", "--name", "store", "--constraint", onWorker,
			"--mount", "type=volume,source=store-data,target=/data", "words-db:v1")
		old := waitConverged(t, api, "store", 1, convergeTimeout)[0]
		url := "http://" + taskIP(t, old) + ":7000/words"
		testutil.Eventually(t, convergeTimeout, func() error {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("kept"))
			return do(w.HTTPClient(), req, http.StatusOK, http.StatusCreated)
		})
		if err := syscall.Kill(int(old.GetStatus().GetPid()), syscall.SIGKILL); err != nil {
			t.Fatalf("kill the container's process %d: %v", old.GetStatus().GetPid(), err)
		}
		tasks := waitTasks(t, api, "store", moveTimeout, func(tasks []*shoalpb.Task) error {
			cur := current(tasks)
			if len(cur) != 1 || cur[0].GetId() == old.GetId() || cur[0].GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_RUNNING {
				return fmt.Errorf("want one new running task after the kill, have %s", summary(tasks))
			}
			return nil
		})
		for _, task := range tasks {
			if task.GetId() == old.GetId() && task.GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_FAILED {
				t.Errorf("the killed task is %s, want FAILED: %s", task.GetStatus().GetState(), describe(task.GetStatus()))
			}
		}
		replacement := current(tasks)[0]
		testutil.Eventually(t, convergeTimeout, func() error {
			req, _ := http.NewRequest(http.MethodGet, "http://"+taskIP(t, replacement)+":7000/words", nil)
			body, err := get(w.HTTPClient(), req)
			if err == nil && !strings.Contains(body, "kept") {
				err = fmt.Errorf("the new task's words are %q, want the word written before the kill", body)
			}
			return err
		})
	})

	t.Run("agent restart adopts running containers", func(t *testing.T) {
		mustShoal(t, m, "service", "create", "--name", "adopted", "--replicas", "2", "--constraint", onWorker, "words-db:v1")
		before := waitConverged(t, api, "adopted", 2, convergeTimeout)
		w.Kill(t)
		w.Restart(t)
		c.WaitHealthy(t)
		after := waitConverged(t, api, "adopted", 2, convergeTimeout)
		sameTasks(t, "after the worker's agent restarted", before, after)
		for i := range before {
			if before[i].GetStatus().GetPid() != after[i].GetStatus().GetPid() {
				t.Errorf("slot %d: pid %d before the restart, %d after; the container should have been adopted", before[i].GetSlot(), before[i].GetStatus().GetPid(), after[i].GetStatus().GetPid())
			}
		}
	})

	t.Run("image health check runs inside the container", func(t *testing.T) {
		mustShoal(t, m, "service", "create", "--name", "healthy", "--constraint", onWorker,
			"--env", "APP_NAME=127.0.0.1:1", "--health-interval", "500ms", "words-web:v1")
		waitTasks(t, api, "healthy", convergeTimeout, func(tasks []*shoalpb.Task) error {
			cur := current(tasks)
			if len(cur) != 1 || cur[0].GetStatus().GetHealth() != shoalpb.HealthState_HEALTH_HEALTHY || !cur[0].GetStatus().GetReady() {
				return fmt.Errorf("want one healthy, ready task, have %s", summary(tasks))
			}
			return nil
		})
	})

	t.Run("failing HTTP liveness replaces the task, failing readiness keeps it not ready", func(t *testing.T) {
		// words-db answers 404 on /nope: the agent probes the task's own
		// address from the node's host.
		mustShoal(t, m, "service", "create", "--detach", "--name", "sick", "--constraint", onWorker,
			"--health-http", "/nope:7000", "--health-interval", "300ms", "--health-retries", "2", "words-db:v1")
		mustShoal(t, m, "service", "create", "--detach", "--name", "unready", "--constraint", onWorker,
			"--readiness-http", "/nope:7000", "--readiness-interval", "300ms", "words-db:v1")
		mustShoal(t, m, "service", "create", "--detach", "--name", "ready", "--constraint", onWorker,
			"--readiness-http", "/healthz:7000", "--readiness-interval", "300ms", "words-db:v1")
		waitTasks(t, api, "sick", moveTimeout, func(tasks []*shoalpb.Task) error {
			for _, task := range tasks {
				if task.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_FAILED && strings.Contains(task.GetStatus().GetErr(), "health check failed") {
					return nil
				}
			}
			return fmt.Errorf("no task failed its health check yet: %s %v", summary(tasks), errs(tasks))
		})
		// Once its twin with a passing check is ready, the failing one has
		// been probed too.
		waitTasks(t, api, "ready", convergeTimeout, func(tasks []*shoalpb.Task) error {
			if cur := current(tasks); len(cur) != 1 || !cur[0].GetStatus().GetReady() {
				return fmt.Errorf("want one ready task, have %s", summary(tasks))
			}
			return nil
		})
		unready := waitTasks(t, api, "unready", convergeTimeout, func(tasks []*shoalpb.Task) error {
			cur := current(tasks)
			if len(cur) != 1 || cur[0].GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_RUNNING || cur[0].GetStatus().GetReady() {
				return fmt.Errorf("want one running task that is not ready, have %s", summary(tasks))
			}
			return nil
		})
		if len(unready) != 1 {
			t.Errorf("the task failing readiness was replaced: %s", summary(unready))
		}
		// Its image's own health check passes; only readiness fails.
		testutil.Eventually(t, convergeTimeout, func() error {
			if out := mustShoal(t, m, "service", "ps", "unready"); !strings.Contains(out, "(healthy, not ready)") {
				return fmt.Errorf("service ps does not show the task healthy but not ready:\n%s", out)
			}
			return nil
		})
	})

	t.Run("memory limit is enforced and the OOM kill reported", func(t *testing.T) {
		mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))
		mustShoal(t, m, "service", "create", "--detach", "--name", "hungry", "--constraint", onWorker,
			"--limit-memory", "16M", "--restart-condition", "none", testutil.AppImageName, "alloc", "64")
		waitTasks(t, api, "hungry", convergeTimeout, func(tasks []*shoalpb.Task) error {
			for _, task := range tasks {
				st := task.GetStatus()
				if st.GetState() != shoalpb.TaskState_TASK_STATE_FAILED {
					continue
				}
				if !st.GetOomKilled() || !strings.Contains(st.GetErr(), "out of memory") {
					return fmt.Errorf("task failed with oom_killed=%v and %q, want an OOM kill reported", st.GetOomKilled(), st.GetErr())
				}
				return nil
			}
			return fmt.Errorf("no task failed yet: %s", summary(tasks))
		})
	})

	t.Run("service logs and an update of the task spec", func(t *testing.T) {
		mustShoal(t, m, "service", "create", "--name", "ticker", "--constraint", onWorker, "--no-healthcheck", testutil.AppImageName, "tick")
		old := waitConverged(t, api, "ticker", 1, convergeTimeout)[0]
		name := fmt.Sprintf("ticker.1.%s", old.GetId())
		testutil.Eventually(t, convergeTimeout, func() error {
			out, err := m.Shoal(t, "service", "logs", "ticker")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, name) && strings.HasSuffix(line, "| tick 0") {
					return nil
				}
			}
			return fmt.Errorf("service logs ticker printed\n%s\nno line from %s ending in %q", out, name, "| tick 0")
		})
		mustShoal(t, m, "service", "update", "--env-add", "GREETING=hello", "ticker")
		updated := waitConverged(t, api, "ticker", 1, convergeTimeout)[0]
		if updated.GetId() == old.GetId() {
			t.Fatalf("the update of the environment kept task %s", old.GetId())
		}
		env, err := procFile(updated.GetStatus().GetPid(), "environ")
		if err != nil || !slices.Contains(env, "GREETING=hello") {
			t.Fatalf("the updated container's process %d has environment %q (%v), want GREETING=hello in it", updated.GetStatus().GetPid(), env, err)
		}
		waitProcessGone(t, old.GetStatus().GetPid(), convergeTimeout)
	})

	t.Run("bad input fails the task with a clear error", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"nowhere", []string{"nosuch-image:v9"}, "image docker.io/library/nosuch-image:v9 not found on any node or registry"},
			{"nomount", []string{"--mount", "type=bind,source=/no/such/dir,target=/x", "words-db:v1"}, "/no/such/dir does not exist"},
		} {
			// The CLI waits for the service and names the task's error.
			args := append([]string{"service", "create", "--name", tc.name, "--constraint", onWorker, "--restart-condition", "none"}, tc.args...)
			_, err := m.Shoal(t, args...)
			wantError(t, "service create "+tc.name, err, tc.want)
			waitTasks(t, api, tc.name, convergeTimeout, func(tasks []*shoalpb.Task) error {
				for _, task := range tasks {
					if strings.Contains(task.GetStatus().GetErr(), tc.want) {
						return nil
					}
				}
				return fmt.Errorf("no task failed with %q: %s (%v)", tc.want, summary(tasks), errs(tasks))
			})
		}
	})

	t.Run("a volume in use cannot be removed", func(t *testing.T) {
		mustShoal(t, m, "service", "create", "--name", "user", "--constraint", "node.id=="+m.ID(t),
			"--mount", "type=volume,source=busy,target=/data", "words-db:v1")
		waitConverged(t, api, "user", 1, convergeTimeout)
		_, err := m.Shoal(t, "volume", "rm", "busy")
		wantError(t, "volume rm of a volume in use", err, "in use", "--force")
		if out := mustShoal(t, m, "volume", "ls"); !strings.Contains(out, "busy") {
			t.Errorf("the refused volume rm removed the volume: volume ls says\n%s", out)
		}
	})

	t.Run("a worker that leaves takes its containers and task networks with it", func(t *testing.T) {
		mustShoal(t, m, "service", "create", "--name", "leaver", "--replicas", "2", "--constraint", onWorker, "words-db:v1")
		tasks := waitConverged(t, api, "leaver", 2, convergeTimeout)
		mustShoal(t, w, "leave")
		waitExit(t, w, moveTimeout)
		if err := leftovers(w, tasks); err != nil {
			t.Error(err)
		}
		for _, task := range tasks {
			if processRunning(task.GetStatus().GetPid()) {
				t.Errorf("task %s's process %d still runs after its node left", task.GetId(), task.GetStatus().GetPid())
			}
		}
	})
}

// errs lists the tasks' errors, for failure messages.
func errs(tasks []*shoalpb.Task) []string {
	var out []string
	for _, task := range tasks {
		if e := task.GetStatus().GetErr(); e != "" {
			out = append(out, e)
		}
	}
	return out
}
