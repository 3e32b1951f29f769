package integration

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// Releases of a web front under HTTP load (docs/releases.md), in order on one
// cluster of three containerd managers that all run tasks: words-web, 3
// tasks published on port 8088 through the routing mesh, proxying every
// request to words-app. A bounded load (testutil.StartLoad) sends requests
// through one node's published port for the whole of each scenario and
// counts every failed one: a release must fail none (a stop-first update of
// a single task and a leader killed mid-update only log theirs). Each
// scenario starts from the version it names, updating web there first if an
// earlier scenario failed or did not run.
func TestZeroDowntimeReleases(t *testing.T) {
	c := containerCluster(t, 3, 0)
	m := c.Managers[0]
	r := &release{c: c, api: controlAPI(t, m), entry: m}
	loadImages(t, m, "words-app:v1", "words-web:v1", "words-web:v2")
	// HTTP health checks every second: a replacement is ready about a
	// second after it listens, without an exec per probe.
	mustShoal(t, m, "service", "create", "--name", "app", "--replicas", "2", "--env", "DB_HOST=db:7000",
		"--health-http", "/healthz:8080", "--health-interval", "1s", "words-app:v1")
	mustShoal(t, m, "service", "create", "--name", "web", "--replicas", fmt.Sprint(webReplicas), "--env", "APP_NAME=app:8080",
		"--publish", "published="+webPort+",target=80", "--health-http", "/healthz:80", "--health-interval", "1s", "words-web:v1")
	convergedNow(t, r.api, "app", 2, "service create")

	t.Run("a broken v2 rolls back by itself", r.brokenRollsBack)
	t.Run("start-first", func(t *testing.T) { r.rolls(t, "start-first", "v1", "v2") })
	t.Run("stop-first", func(t *testing.T) { r.rolls(t, "stop-first", "v2", "v1") })
	t.Run("drain", r.drain)
	t.Run("canary then rollback", r.canaryRolledBack)
	t.Run("canary then promote", r.canaryPromoted)
	t.Run("stop-first with one replica", r.stopFirstOneReplica)
	t.Run("leader killed mid-update", r.leaderKilled)
}

// rolls updates web from one version to the other in order: no request
// fails, and every replica ends on the new version.
func (r *release) rolls(t *testing.T, order, from, to string) {
	r.from(t, from)
	before := r.web(t).GetSpecVersion()
	load := startLoad(t, r.entry)
	mustShoal(t, r.entry, "service", "update", "--image", "words-web:"+to, "--update-order", order, "--update-canary", "0", "web")
	r.waitRollout(t, before, shoalpb.UpdateState_UPDATE_STATE_COMPLETED)
	r.waitWeb(t, to, webReplicas)
	noFailures(t, order+" "+from+" → "+to, load.Stop(), from, to)
}

// A v2 whose health check never passes (its path answers 404), with failure
// action rollback: the update goes back to v1 by itself, `service update`
// says it failed, no request fails, and the v1 tasks were never stopped.
func (r *release) brokenRollsBack(t *testing.T) {
	old := r.from(t, "v1")
	svc := r.web(t)
	load := startLoad(t, r.entry)
	out, err := r.entry.Shoal(t, "service", "update", "--image", "words-web:v2",
		"--health-http", "/broken:80", "--health-interval", "500ms", "--health-retries", "2",
		"--update-order", "start-first", "--update-canary", "0", "--update-failure-action", "rollback", "web")
	if err == nil {
		t.Errorf("service update to a v2 that never becomes healthy exited 0, want an error after the rollback; it printed:\n%s", out)
	} else {
		t.Logf("service update failed as it should: %v", err)
	}
	after := r.waitRollout(t, svc.GetSpecVersion(), shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED)
	if msg := after.GetUpdateStatus().GetMessage(); !strings.Contains(msg, "health check failed") {
		t.Errorf("the rollback completed with message %q, want it to say the health check failed", msg)
	}
	if !proto.Equal(after.GetSpec().GetTask(), svc.GetSpec().GetTask()) {
		t.Errorf("after the rollback web's task spec is %v, want the v1 one %v", after.GetSpec().GetTask(), svc.GetSpec().GetTask())
	}
	tasks := r.waitWeb(t, "v1", webReplicas)
	for _, task := range tasks {
		if !proto.Equal(task.GetSpec(), svc.GetSpec().GetTask()) {
			t.Errorf("after the rollback task %s runs %v, want the v1 spec %v", task.GetId(), task.GetSpec(), svc.GetSpec().GetTask())
		}
	}
	sameTasks(t, "rollback of a start-first update", old, tasks)
	noFailures(t, "broken v2 rolled back", load.Stop(), "v1")
}

// Draining a node that runs web tasks, with the load sent through another
// node: its tasks move to the other nodes one by one, and no request fails.
func (r *release) drain(t *testing.T) {
	tasks := r.from(t, "v1")
	var drained *testutil.Node
	for _, n := range others(r.c.Nodes(), r.entry) {
		if len(onNode(tasks, n.ID(t))) > 0 {
			drained = n
			break
		}
	}
	if drained == nil {
		t.Fatalf("no node but the load's %s runs web tasks: %s", r.entry.Name, summary(tasks))
	}
	id := drained.ID(t)
	load := startLoad(t, r.entry)
	mustShoal(t, r.entry, "node", "update", "--availability", "drain", id)
	t.Cleanup(func() { mustShoal(t, r.entry, "node", "update", "--availability", "active", id) })
	waitTasks(t, r.api, "web", rolloutTimeout, convergedOff(webReplicas, id, "the drained "+drained.Name))
	waitTasks(t, r.api, "app", rolloutTimeout, convergedOff(2, id, "the drained "+drained.Name))
	r.waitWeb(t, "v1", webReplicas)
	noFailures(t, "drain of "+drained.Name, load.Stop(), "v1")
}

// waitCanary waits until web runs, beside its tasks of version old, one
// ready canary of version canary, and the load got an answer from it: both
// serve traffic.
func (r *release) waitCanary(t *testing.T, load *testutil.Load, old, canary string) {
	t.Helper()
	waitTasks(t, r.api, "web", rolloutTimeout, func(tasks []*shoalpb.Task) error {
		versions := map[string]int{}
		for _, task := range current(tasks) {
			if st := task.GetStatus(); st.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING || !st.GetReady() {
				return fmt.Errorf("task %s (slot %d, %s) is %s, ready %v: %s", task.Id, task.Slot, imageVersion(task), st.GetState(), st.GetReady(), summary(tasks))
			}
			versions[imageVersion(task)]++
		}
		if versions[old] != webReplicas || versions[canary] != 1 || len(versions) != 2 {
			return fmt.Errorf("web runs %v, want %d of %s and a canary of %s: %s", versions, webReplicas, old, canary, summary(tasks))
		}
		return nil
	})
	testutil.Eventually(t, convergeTimeout, func() error {
		if rep := load.Report(); byVersion(rep)[canary] == 0 {
			return fmt.Errorf("the canary is ready, but no request reached it: %s", rep)
		}
		return nil
	})
}

// A canary of v2 beside the three v1 tasks, then `service rollback`: v1
// everywhere, the v1 tasks never stopped, and no request fails.
func (r *release) canaryRolledBack(t *testing.T) {
	old := r.from(t, "v1")
	before := r.web(t).GetSpecVersion()
	load := startLoad(t, r.entry)
	mustShoal(t, r.entry, "service", "update", "--detach", "--image", "words-web:v2", "--update-canary", "1", "web")
	canary := r.waitRollout(t, before, shoalpb.UpdateState_UPDATE_STATE_CANARY)
	r.waitCanary(t, load, "v1", "v2")
	mustShoal(t, r.entry, "service", "rollback", "web")
	r.waitRollout(t, canary.GetSpecVersion(), shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED)
	sameTasks(t, "rollback of a canary", old, r.waitWeb(t, "v1", webReplicas))
	noFailures(t, "canary rolled back", load.Stop(), "v1", "v2")
}

// A canary of v2, then `service promote`: the update goes on to every task,
// and no request fails.
func (r *release) canaryPromoted(t *testing.T) {
	r.from(t, "v1")
	before := r.web(t).GetSpecVersion()
	load := startLoad(t, r.entry)
	mustShoal(t, r.entry, "service", "update", "--detach", "--image", "words-web:v2", "--update-canary", "1", "web")
	r.waitRollout(t, before, shoalpb.UpdateState_UPDATE_STATE_CANARY)
	r.waitCanary(t, load, "v1", "v2")
	mustShoal(t, r.entry, "service", "promote", "web")
	r.waitRollout(t, before, shoalpb.UpdateState_UPDATE_STATE_COMPLETED)
	r.waitWeb(t, "v2", webReplicas)
	noFailures(t, "canary promoted", load.Stop(), "v1", "v2")
}

// A stop-first update of a single task leaves nothing to answer until the
// replacement is ready: the gap is measured and logged, not asserted
// (docs/releases.md, "Stop-first with one replica").
func (r *release) stopFirstOneReplica(t *testing.T) {
	r.from(t, "v2")
	mustShoal(t, r.entry, "service", "scale", "web=1") // the next scenario's from scales back
	r.waitWeb(t, "v2", 1)
	before := r.web(t).GetSpecVersion()
	load := startLoad(t, r.entry)
	mustShoal(t, r.entry, "service", "update", "--image", "words-web:v1", "--update-order", "stop-first", "--update-canary", "0", "web")
	r.waitRollout(t, before, shoalpb.UpdateState_UPDATE_STATE_COMPLETED)
	r.waitWeb(t, "v1", 1)
	rep := load.Stop()
	t.Logf("stop-first update of one replica (shoal service update --image words-web:v1 --update-order stop-first web): "+
		"%d of %d requests failed, longest outage %s\n%s", rep.Failed, rep.Requests, rep.LongestOutage, rep)
}

// kill -9 of the leader while a start-first update has replaced one of three
// tasks: the new leader carries the update on from the store, and every
// replica ends on the new version with the update COMPLETED. The load, sent
// through a node that stays up, is logged only: the killed node's tasks go
// down with it until they are replaced.
func (r *release) leaderKilled(t *testing.T) {
	r.from(t, "v1")
	leader := r.c.Leader(t)
	survivor := others(r.c.Managers, leader)[0]
	s := &release{c: r.c, api: controlAPI(t, survivor), entry: survivor}
	before := s.web(t).GetSpecVersion()
	load := startLoad(t, s.entry)
	// A pause between batches leaves time to kill the leader mid-update.
	// The leader's node runs tasks too: a replacement lost with it is
	// replaced, and the update (failure action pause) still completes.
	mustShoal(t, s.entry, "service", "update", "--detach", "--image", "words-web:v2", "--update-order", "start-first",
		"--update-canary", "0", "--update-delay", "3s", "web")
	waitTasks(t, s.api, "web", rolloutTimeout, func(tasks []*shoalpb.Task) error {
		for _, task := range current(tasks) {
			if imageVersion(task) == "v2" && task.GetStatus().GetReady() {
				return nil
			}
		}
		return fmt.Errorf("no v2 task is ready yet: %s", summary(tasks))
	})
	if st := s.web(t).GetUpdateStatus(); st.GetState() != shoalpb.UpdateState_UPDATE_STATE_UPDATING {
		t.Fatalf("the update is %s (%s) before the leader was killed, want UPDATING", st.GetState(), st.GetMessage())
	}
	leader.Kill(t)
	if r.c.Leader(t) == leader {
		t.Fatalf("the killed %s is still reported as leader", leader.Name)
	}
	done := s.waitRollout(t, before, shoalpb.UpdateState_UPDATE_STATE_COMPLETED)
	t.Logf("update completed after the leader was killed: %s", done.GetUpdateStatus().GetMessage())
	tasks := waitTasks(t, s.api, "web", rolloutTimeout, func(tasks []*shoalpb.Task) error {
		if err := convergedOff(webReplicas, leader.ID(t), "the killed leader "+leader.Name)(tasks); err != nil {
			return err
		}
		return allOn("v2")(current(tasks))
	})
	s.waitAnswers(t, current(tasks), "v2")
	t.Logf("leader %s killed mid-update: load through %s: %s", leader.Name, survivor.Name, load.Stop())
}
