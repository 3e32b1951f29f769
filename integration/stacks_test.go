package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testutil"
	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// Stack deploys from compose files (issue 7), in order on one cluster of a
// containerd manager and two workers: the words demo (testdata/stacks/
// words.yml) deployed through the CLI, its database restarted, one service
// changed by a redeploy, a service pruned, depends_on holding a service back
// until its dependency is healthy, bad files refused without a change, and
// the stack removed. Each subtest goes on from where the one before left
// the stack.
func TestStacks(t *testing.T) {
	c := containerCluster(t, 1, 2)
	m := c.Managers[0]
	s := &stacks{c: c, m: m, api: controlAPI(t, m)}
	loadImages(t, m, "words-db:v1", "words-app:v1", "words-web:v1", "words-web:v2")
	mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))

	t.Run("deploy words", s.deployWords)
	t.Run("database restart keeps the words", s.databaseRestart)
	t.Run("redeploy rolls the changed service only", s.redeployOne)
	t.Run("prune removes a service that left the files", s.prune)
	t.Run("depends_on waits for a healthy dependency", s.dependsHealthy)
	t.Run("bad input changes nothing", s.badInput)
	t.Run("stack rm", s.remove)
}

// stacks is the cluster the stack scenarios share; commands go to m.
type stacks struct {
	c   *testutil.Cluster
	m   *testutil.Node
	api shoalpb.ControlServiceClient
}

const (
	// wordsPort is where words.yml publishes its web front.
	wordsPort = "8080"
	// stackWord is what the first scenario stores and the later ones read
	// back.
	stackWord = "shoal-stacks"
)

// Service names of the words stack.
const (
	wordsDB  = "words_database"
	wordsApp = "words_application-server"
	wordsWeb = "words_web-server"
)

// stackFile is the absolute path of a compose file under testdata/stacks.
func stackFile(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "testdata", "stacks", name))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// deployArgs is `stack deploy` with -c for each of files (under
// testdata/stacks), then extra.
func deployArgs(t *testing.T, files []string, extra ...string) []string {
	t.Helper()
	args := []string{"stack", "deploy"}
	for _, f := range files {
		args = append(args, "-c", stackFile(t, f))
	}
	return append(args, extra...)
}

// views are the services of stack as the control API shows them, by name.
func (s *stacks) views(t *testing.T, stack string) map[string]*shoalpb.ServiceView {
	t.Helper()
	resp, err := s.api.ListServices(callCtx(t), &shoalpb.ListServicesRequest{Filters: map[string]string{"label": servicespec.StackLabel + "=" + stack}})
	if err != nil {
		t.Fatalf("list the services of stack %s: %v", stack, err)
	}
	out := map[string]*shoalpb.ServiceView{}
	for _, v := range resp.GetServices() {
		out[v.GetService().GetSpec().GetName()] = v
	}
	return out
}

// specVersions maps the services of views to their spec versions.
func specVersions(views map[string]*shoalpb.ServiceView) map[string]uint64 {
	out := map[string]uint64{}
	for name, v := range views {
		out[name] = v.GetService().GetSpecVersion()
	}
	return out
}

// wordsURL is path of words-web's API through n's published port, with the
// login words.yml sets by default.
func wordsURL(n *testutil.Node, path string) string {
	return "http://demo:demo@" + n.IP + ":" + wordsPort + "/api" + path
}

// wordsAnswer is words-web's answer to GET /api/words: the list from
// words-app, which task of words-app served it, and which task and version
// of words-web proxied it.
type wordsAnswer struct {
	Words           []string `json:"words"`
	ServedBy        string   `json:"served_by"`
	web, webVersion string
}

// readWords gets the word list through n's published port.
func readWords(n *testutil.Node) (wordsAnswer, error) {
	var a wordsAnswer
	req, err := http.NewRequest(http.MethodGet, wordsURL(n, "/words"), nil)
	if err != nil {
		return a, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("GET %s: %s", req.URL.Redacted(), resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("GET %s: %w", req.URL.Redacted(), err)
	}
	a.web, a.webVersion = answerVersion(resp.Header.Get(versionHeader))
	return a, nil
}

// readWord reads the word list through n, and fails unless it holds
// stackWord.
func readWord(n *testutil.Node) (wordsAnswer, error) {
	a, err := readWords(n)
	if err == nil && !slices.Contains(a.Words, stackWord) {
		err = fmt.Errorf("the words read through %s are %q, want %q among them", n.Name, a.Words, stackWord)
	}
	return a, err
}

// readySince is when the last of tasks, all running and ready, became
// ready: the agent stamps a task's status when its readiness changes.
func readySince(t *testing.T, service string, tasks []*shoalpb.Task) time.Time {
	t.Helper()
	var last time.Time
	for _, task := range tasks {
		st := task.GetStatus()
		if st.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING || !st.GetReady() {
			t.Fatalf("task %s of %s is %s, ready %v; want every task running and ready", task.GetId(), service, st.GetState(), st.GetReady())
		}
		if at := st.GetTimestamp().AsTime(); at.After(last) {
			last = at
		}
	}
	return last
}

// startedAfter fails unless every task service ever had was created after
// ready, the time its dependency became ready.
func startedAfter(t *testing.T, api shoalpb.ControlServiceClient, service, dependency string, ready time.Time) {
	t.Helper()
	tasks, err := tasksOf(api, service)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if created := task.GetMeta().GetCreatedAt().AsTime(); created.Before(ready) {
			t.Errorf("task %s of %s was created at %s, before %s was ready at %s: depends_on did not hold it back",
				task.GetId(), service, created.Format(time.StampMilli), dependency, ready.Format(time.StampMilli))
		}
	}
}

// The three tiers deploy in dependency order through the CLI, each reaching
// the one below by its short name, and a word stored through one node's
// published port is read back through the others, from other replicas.
func (s *stacks) deployWords(t *testing.T) {
	out := mustShoal(t, s.m, deployArgs(t, []string{"words.yml"}, "--detach=false", "words")...)
	t.Logf("stack deploy:\n%s", out)
	want := []string{"Creating network words_default", "Creating service " + wordsApp, "Creating service " + wordsDB, "Creating service " + wordsWeb}
	if changes := changeLines(out); !slices.Equal(changes, want) || !strings.Contains(out, "stack words converged") {
		t.Errorf("stack deploy printed the changes %q, want %q, then that the stack converged:\n%s", changes, want, out)
	}
	db := convergedNow(t, s.api, wordsDB, 1, "stack deploy")
	apps := convergedNow(t, s.api, wordsApp, 3, "stack deploy")
	convergedNow(t, s.api, wordsWeb, 3, "stack deploy")
	if db[0].GetNodeId() != s.m.ID(t) {
		t.Errorf("the database runs on %s, want the manager %s (node.role == manager)", db[0].GetNodeId(), s.m.ID(t))
	}
	startedAfter(t, s.api, wordsApp, wordsDB, readySince(t, wordsDB, db))
	startedAfter(t, s.api, wordsWeb, wordsApp, readySince(t, wordsApp, apps))

	if ls := mustShoal(t, s.m, "stack", "ls", "--format", "{{.Name}} {{.Services}}"); !slices.Contains(strings.Split(ls, "\n"), "words 3") {
		t.Errorf("stack ls printed %q, want a line \"words 3\"", ls)
	}
	services := mustShoal(t, s.m, "stack", "services", "--format", "{{.Name}} {{.Replicas}}", "words")
	wantServices := wordsApp + " 3/3\n" + wordsDB + " 1/1\n" + wordsWeb + " 3/3\n"
	if services != wantServices {
		t.Errorf("stack services words printed\n%s\nwant\n%s", services, wantServices)
	}

	testutil.Eventually(t, convergeTimeout, func() error {
		req, err := http.NewRequest(http.MethodPost, wordsURL(s.m, "/words"), strings.NewReader(stackWord))
		if err != nil {
			return err
		}
		return do(httpClient, req, http.StatusCreated)
	})
	// Every node reads the word back, and the mesh spreads the reads over
	// the replicas of both tiers.
	servedBy, proxiedBy := map[string]bool{}, map[string]bool{}
	testutil.Eventually(t, convergeTimeout, func() error {
		for _, n := range others(s.c.Nodes(), s.m) {
			a, err := readWord(n)
			if err != nil {
				return err
			}
			servedBy[a.ServedBy], proxiedBy[a.web] = true, true
		}
		if len(servedBy) < 2 || len(proxiedBy) < 2 {
			return fmt.Errorf("the reads were served by application-server tasks %v through web-server tasks %v; want two or more of each", servedBy, proxiedBy)
		}
		return nil
	})
}

// SIGKILL of the database's container: a new task takes its slot on the
// manager, where the volume holds the word stored before.
func (s *stacks) databaseRestart(t *testing.T) {
	old := waitConverged(t, s.api, wordsDB, 1, convergeTimeout)[0]
	if err := syscall.Kill(int(old.GetStatus().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatalf("kill the database's process %d: %v", old.GetStatus().GetPid(), err)
	}
	waitTasks(t, s.api, wordsDB, moveTimeout+convergeTimeout, func(tasks []*shoalpb.Task) error {
		cur := current(tasks)
		if len(cur) != 1 || cur[0].GetId() == old.GetId() {
			return fmt.Errorf("want one new task after the kill, have %s", summary(tasks))
		}
		if err := converged(1)(tasks); err != nil {
			return err
		}
		switch task := cur[0]; {
		case task.GetSlot() != old.GetSlot() || task.GetNodeId() != old.GetNodeId():
			return fmt.Errorf("the new task %s is slot %d on %s, want slot %d on %s: %s", task.GetId(), task.GetSlot(), task.GetNodeId(), old.GetSlot(), old.GetNodeId(), summary(tasks))
		case !task.GetStatus().GetReady():
			return fmt.Errorf("the new task %s is not ready yet", task.GetId())
		}
		return nil
	})
	testutil.Eventually(t, convergeTimeout, func() error {
		_, err := readWord(s.c.Workers[0])
		return err
	})
}

// A redeploy whose files change web-server's image only: web-server rolls
// to v2 (start-first) under load with no failed request, and the database
// and application-server keep their spec versions and tasks.
func (s *stacks) redeployOne(t *testing.T) {
	before := specVersions(s.views(t, "words"))
	db := waitConverged(t, s.api, wordsDB, 1, convergeTimeout)
	apps := waitConverged(t, s.api, wordsApp, 3, convergeTimeout)
	load := testutil.StartLoad(t, testutil.LoadConfig{
		URL:     wordsURL(s.c.Workers[1], "/healthz"),
		Workers: 4,
		Pace:    20 * time.Millisecond,
		Timeout: 30 * time.Second,
		Header:  versionHeader,
	})
	out := mustShoal(t, s.m, deployArgs(t, []string{"words.yml", "e2e/web-v2.yml"}, "--detach=false", "words")...)
	t.Logf("stack deploy:\n%s", out)
	if changes := changeLines(out); !slices.Equal(changes, []string{"Updating service " + wordsWeb}) || !strings.Contains(out, "stack words converged") {
		t.Errorf("stack deploy printed the changes %q, want only \"Updating service %s\", then that the stack converged:\n%s", changes, wordsWeb, out)
	}
	if want := "Unchanged: words_default, " + wordsApp + ", " + wordsDB + "\n"; !strings.Contains(out, want) {
		t.Errorf("stack deploy printed no %q:\n%s", want, out)
	}
	webs := waitTasks(t, s.api, wordsWeb, rolloutTimeout, func(tasks []*shoalpb.Task) error {
		if err := converged(3)(tasks); err != nil {
			return err
		}
		return allOn("v2")(current(tasks))
	})
	testutil.Eventually(t, convergeTimeout, func() error {
		if seen := byVersion(load.Report()); seen["v2"] == 0 {
			return fmt.Errorf("the load got no answer from v2 yet (answers by version: %v)", seen)
		}
		return nil
	})
	noFailures(t, "redeploy of words with web-server at v2", load.Stop(), "v1", "v2")
	hosts := map[string]bool{}
	for _, task := range current(webs) {
		hosts[task.GetId()[:min(12, len(task.GetId()))]] = true
	}
	testutil.Eventually(t, convergeTimeout, func() error {
		for _, n := range s.c.Nodes() {
			for range 2 * len(hosts) {
				a, err := readWord(n)
				if err != nil {
					return err
				}
				if !hosts[a.web] || a.webVersion != "v2" {
					return fmt.Errorf("a read through %s was proxied by %q at %q, want one of the tasks %v at v2", n.Name, a.web, a.webVersion, slices.Sorted(maps.Keys(hosts)))
				}
			}
		}
		return nil
	})

	after := specVersions(s.views(t, "words"))
	for _, name := range []string{wordsDB, wordsApp} {
		if after[name] != before[name] {
			t.Errorf("%s went from spec version %d to %d; it did not change", name, before[name], after[name])
		}
	}
	if after[wordsWeb] == before[wordsWeb] {
		t.Errorf("%s kept spec version %d; its image changed", wordsWeb, before[wordsWeb])
	}
	sameTasks(t, "database after the redeploy", db, waitConverged(t, s.api, wordsDB, 1, convergeTimeout))
	sameTasks(t, "application-server after the redeploy", apps, waitConverged(t, s.api, wordsApp, 3, convergeTimeout))
}

// changeLines are the lines of a deploy's output that say it created,
// updated or removed something.
func changeLines(out string) []string {
	var changes []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Creating ") || strings.HasPrefix(line, "Updating ") || strings.HasPrefix(line, "Removing ") {
			changes = append(changes, line)
		}
	}
	return changes
}

// A service added by one more file stays when a deploy leaves that file out,
// and goes with --prune: its task stops.
func (s *stacks) prune(t *testing.T) {
	withCache := []string{"words.yml", "e2e/web-v2.yml", "e2e/cache.yml"}
	without := []string{"words.yml", "e2e/web-v2.yml"}
	out := mustShoal(t, s.m, deployArgs(t, withCache, "--detach=false", "words")...)
	if changes := changeLines(out); !slices.Equal(changes, []string{"Creating service words_cache"}) {
		t.Errorf("stack deploy with cache.yml printed the changes %q, want only \"Creating service words_cache\":\n%s", changes, out)
	}
	cache := convergedNow(t, s.api, "words_cache", 1, "stack deploy with cache.yml")

	out = mustShoal(t, s.m, deployArgs(t, without, "--detach=false", "words")...)
	if changes := changeLines(out); len(changes) > 0 {
		t.Errorf("stack deploy without cache.yml nor --prune should change nothing, and printed %q:\n%s", changes, out)
	}
	sameTasks(t, "words_cache after a deploy without it and without --prune", cache, convergedNow(t, s.api, "words_cache", 1, "stack deploy"))

	out = mustShoal(t, s.m, deployArgs(t, without, "--prune", "--detach=false", "words")...)
	if changes := changeLines(out); !slices.Equal(changes, []string{"Removing service words_cache"}) {
		t.Errorf("stack deploy --prune printed the changes %q, want only \"Removing service words_cache\":\n%s", changes, out)
	}
	if _, ok := s.views(t, "words")["words_cache"]; ok {
		t.Errorf("words_cache is still a service of the stack after --prune")
	}
	waitProcessGone(t, cache[0].GetStatus().GetPid(), convergeTimeout)
	noRunningTasks(t, s.api, cache[0].GetServiceId())
}

// noRunningTasks waits until no task of the services ids runs or is being
// started.
func noRunningTasks(t *testing.T, api shoalpb.ControlServiceClient, ids ...string) {
	t.Helper()
	testutil.Eventually(t, convergeTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := api.ListTasks(ctx, &shoalpb.ListTasksRequest{})
		if err != nil {
			return err
		}
		var left []*shoalpb.Task
		for _, task := range resp.GetTasks() {
			if slices.Contains(ids, task.GetServiceId()) && task.GetStatus().GetState() < shoalpb.TaskState_TASK_STATE_COMPLETE {
				left = append(left, task)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("tasks still run: %s", summary(left))
		}
		return nil
	})
}

// serviceIDs are the IDs of the services of views.
func serviceIDs(views map[string]*shoalpb.ServiceView) []string {
	var ids []string
	for _, v := range views {
		ids = append(ids, v.GetService().GetId())
	}
	return ids
}

// depends.yml: b gets no task while a runs unhealthy, and says why; once
// a's check passes, b's tasks start.
func (s *stacks) dependsHealthy(t *testing.T) {
	ready := t.TempDir()
	t.Setenv("DEPS_READY_DIR", ready)
	mustShoal(t, s.m, deployArgs(t, []string{"e2e/depends.yml"}, "--detach", "deps")...)
	waitTasks(t, s.api, "deps_a", convergeTimeout, func(tasks []*shoalpb.Task) error {
		if err := converged(1)(tasks); err != nil {
			return err
		}
		if st := current(tasks)[0].GetStatus(); st.GetReady() {
			return fmt.Errorf("a's task is ready before its check can pass: %s", describe(st))
		}
		return nil
	})
	// The orchestrator reconciles b on every event of a's tasks, in the
	// order of the events: once a service created after a's task ran has a
	// task, b has been reconciled with a running and not healthy.
	mustShoal(t, s.m, append([]string{"service", "create", "--detach", "--name", "deps-marker"}, containerdRuntime.sleeper...)...)
	waitConverged(t, s.api, "deps-marker", 1, convergeTimeout)
	mustShoal(t, s.m, "service", "rm", "deps-marker")
	if want, got := "waiting for deps_a to be healthy", s.views(t, "deps")["deps_b"].GetWaiting(); !strings.Contains(got, want) {
		t.Errorf("deps_b's waiting is %q, want it to say %q", got, want)
	}
	if tasks, err := tasksOf(s.api, "deps_b"); err != nil || len(tasks) > 0 {
		t.Errorf("deps_b has tasks %s (%v) while deps_a is not healthy", summary(tasks), err)
	}

	if err := os.WriteFile(filepath.Join(ready, "ok"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := waitTasks(t, s.api, "deps_a", convergeTimeout, func(tasks []*shoalpb.Task) error {
		if cur := current(tasks); len(cur) != 1 || !cur[0].GetStatus().GetReady() {
			return fmt.Errorf("want a's task ready once its check passes: %s", summary(tasks))
		}
		return nil
	})
	waitConverged(t, s.api, "deps_b", 2, convergeTimeout)
	if got := s.views(t, "deps")["deps_b"].GetWaiting(); got != "" {
		t.Errorf("deps_b runs its tasks but still says %q", got)
	}
	startedAfter(t, s.api, "deps_b", "deps_a", readySince(t, "deps_a", current(a)))
	ids := serviceIDs(s.views(t, "deps"))
	mustShoal(t, s.m, "stack", "rm", "deps")
	noRunningTasks(t, s.api, ids...)
}

// Bad files are refused and leave the stack as it was: values shoal cannot
// honour and undefined networks (found before anything is sent), and a
// deploy the control API refuses after one of its services' updates was
// already drafted.
func (s *stacks) badInput(t *testing.T) {
	before := specVersions(s.views(t, "words"))
	base := []string{"words.yml", "e2e/web-v2.yml"}
	_, err := s.m.Shoal(t, deployArgs(t, append(base, "e2e/bad-restart.yml"), "words")...)
	wantError(t, "stack deploy with restart_policy.condition sometimes", err,
		`services.database.deploy.restart_policy.condition: "sometimes" is not one of none, on-failure, any`)
	_, err = s.m.Shoal(t, deployArgs(t, append(base, "e2e/bad-network.yml"), "words")...)
	wantError(t, "stack deploy with an undefined network", err, "bad-network.yml", `service "web-server" refers to undefined network nowhere`)

	mustShoal(t, s.m, "service", "create", "--detach", "--name", "words_zz", "--replicas", "0", "words-db:v1")
	_, err = s.m.Shoal(t, deployArgs(t, append(base, "e2e/bad-foreign.yml"), "--resolve-image", "never", "words")...)
	wantError(t, "stack deploy of a service named like one outside the stack", err,
		"service words_zz: a service named words_zz exists and is not part of stack words")
	mustShoal(t, s.m, "service", "rm", "words_zz")

	if after := specVersions(s.views(t, "words")); !maps.Equal(after, before) {
		t.Errorf("the stack's services went from spec versions %v to %v after refused deploys", before, after)
	}
	// --resolve-image (always, by default) pinned it to the digest the
	// cluster holds.
	if img := s.views(t, "words")[wordsApp].GetService().GetSpec().GetTask().GetContainer().GetImage(); !strings.HasPrefix(img, "words-app:v1@sha256:") {
		t.Errorf("%s runs image %s after a refused deploy, want words-app:v1 pinned to its digest", wordsApp, img)
	}
}

// stack rm removes the services and the network; their tasks stop.
func (s *stacks) remove(t *testing.T) {
	ids := serviceIDs(s.views(t, "words"))
	var pids []int64
	for _, name := range []string{wordsDB, wordsApp, wordsWeb} {
		tasks, err := tasksOf(s.api, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range current(tasks) {
			pids = append(pids, task.GetStatus().GetPid())
		}
	}
	out := mustShoal(t, s.m, "stack", "rm", "words")
	want := []string{"Removing service " + wordsApp, "Removing service " + wordsDB, "Removing service " + wordsWeb, "Removing network words_default"}
	if changes := changeLines(out); !slices.Equal(changes, want) {
		t.Errorf("stack rm printed the changes %q, want %q:\n%s", changes, want, out)
	}
	if ls := mustShoal(t, s.m, "stack", "ls", "--format", "{{.Name}}"); strings.Contains(ls, "words") {
		t.Errorf("stack ls still lists words after stack rm:\n%s", ls)
	}
	if nets := mustShoal(t, s.m, "network", "ls", "--format", "{{.Name}}"); strings.Contains(nets, "words_") {
		t.Errorf("network ls still lists a network of words after stack rm:\n%s", nets)
	}
	noRunningTasks(t, s.api, ids...)
	for _, pid := range pids {
		waitProcessGone(t, pid, convergeTimeout)
	}
}
