package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// rolloutTimeout bounds a rolling update of the three web tasks: each is
// started, checked healthy and drained in turn, and the rollout completes
// after the monitor period. Generous for a loaded 2-core CI machine.
const rolloutTimeout = 3 * time.Minute

// versionHeader is where words-web says which task and version answered:
// "HOSTNAME VERSION", the hostname being the task ID's first 12 characters.
const versionHeader = "X-Words-Web"

// release is the cluster the release scenarios share: a web front (words-web,
// published on webPort) proxying to app (words-app).
type release struct {
	c     *testutil.Cluster
	api   shoalpb.ControlServiceClient // on entry
	entry *testutil.Node               // where the load and the commands go
}

const (
	webPort     = "8088"
	webReplicas = 3
)

// startLoad starts the scenarios' bounded load: 4 clients, each sending at
// most 50 requests a second, through n's published port to words-web, which
// proxies each to app, so a request fails if either hop drops it. A slow
// answer is not a dropped one: the timeout only catches a request that
// hangs (a CI machine running every package at once under -race once held
// one answer for over 5 s).
func startLoad(t *testing.T, n *testutil.Node) *testutil.Load {
	return testutil.StartLoad(t, testutil.LoadConfig{
		URL:     "http://" + n.IP + ":" + webPort + "/api/healthz",
		Workers: 4,
		Pace:    20 * time.Millisecond,
		Timeout: 30 * time.Second,
		Header:  versionHeader,
	})
}

// answerVersion splits a versionHeader value into host and version.
func answerVersion(value string) (host, version string) {
	host, version, _ = strings.Cut(value, " ")
	return host, version
}

// byVersion counts a load's answers by version.
func byVersion(rep testutil.LoadReport) map[string]int {
	out := map[string]int{}
	for value, n := range rep.Headers {
		_, v := answerVersion(value)
		out[v] += n
	}
	return out
}

// noFailures fails the test if the load saw a failed request, and unless it
// saw answers of every one of versions: a load that did not span the
// release proves nothing.
func noFailures(t *testing.T, what string, rep testutil.LoadReport, versions ...string) {
	t.Helper()
	t.Logf("%s: load: %s", what, rep)
	if rep.Failed > 0 {
		t.Errorf("%s: %d of %d requests failed, want none: %s", what, rep.Failed, rep.Requests, rep)
	}
	seen := byVersion(rep)
	for _, v := range versions {
		if seen[v] == 0 {
			t.Errorf("%s: the load got no answer from %s (answers by version: %v): it did not span the release", what, v, seen)
		}
	}
}

// web reads the web service as the entry manager sees it.
func (r *release) web(t *testing.T) *shoalpb.Service {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := r.api.GetService(ctx, &shoalpb.GetServiceRequest{Service: "web"})
	if err != nil {
		t.Fatalf("get service web: %v", err)
	}
	return svc
}

// waitRollout waits until the rollout that followed spec version after is
// in state want, and returns the service. A rollout that stopped in another
// state (paused, or rolled back when an update was wanted) fails the test at
// once.
func (r *release) waitRollout(t *testing.T, after uint64, want shoalpb.UpdateState) *shoalpb.Service {
	t.Helper()
	var svc *shoalpb.Service
	testutil.Eventually(t, rolloutTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if svc, err = r.api.GetService(ctx, &shoalpb.GetServiceRequest{Service: "web"}); err != nil {
			return err
		}
		st := svc.GetUpdateStatus()
		if st.GetToVersion() <= after {
			return fmt.Errorf("web's rollout is still the one to version %d (%s), want one after version %d", st.GetToVersion(), st.GetState(), after)
		}
		if st.GetState() == want {
			return nil
		}
		if final(st.GetState()) {
			t.Fatalf("web's rollout to version %d ended %s (%s), want %s", st.GetToVersion(), st.GetState(), st.GetMessage(), want)
		}
		tasks, err := tasksOf(r.api, "web")
		if err != nil {
			return err
		}
		return fmt.Errorf("web's rollout to version %d is %s (%s), want %s; tasks %s", st.GetToVersion(), st.GetState(), st.GetMessage(), want, summary(tasks))
	})
	return svc
}

// final reports whether a rollout in state s moves no further by itself.
func final(s shoalpb.UpdateState) bool {
	switch s {
	case shoalpb.UpdateState_UPDATE_STATE_COMPLETED, shoalpb.UpdateState_UPDATE_STATE_PAUSED,
		shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED, shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:
		return true
	}
	return false
}

// imageVersion is the tag of the image a task runs ("v1").
func imageVersion(task *shoalpb.Task) string {
	// A stack pins its images to digests: words-web:v2@sha256:….
	image, _, _ := strings.Cut(task.GetSpec().GetContainer().GetImage(), "@")
	return image[strings.LastIndexByte(image, ':')+1:]
}

// allOn fails unless every task runs version of words-web.
func allOn(version string) func([]*shoalpb.Task) error {
	return func(tasks []*shoalpb.Task) error {
		for _, task := range tasks {
			if v := imageVersion(task); v != version {
				return fmt.Errorf("task %s (slot %d) runs %s, want %s: %s", task.Id, task.Slot, v, version, summary(tasks))
			}
		}
		return nil
	}
}

// waitWeb waits until web runs replicas tasks of version, and every answer
// through r.entry comes from one of them, at that version, all of them
// answering. It returns the tasks.
func (r *release) waitWeb(t *testing.T, version string, replicas int) []*shoalpb.Task {
	t.Helper()
	tasks := waitTasks(t, r.api, "web", rolloutTimeout, func(tasks []*shoalpb.Task) error {
		if err := converged(replicas)(tasks); err != nil {
			return err
		}
		return allOn(version)(current(tasks))
	})
	cur := current(tasks)
	r.waitAnswers(t, cur, version)
	return cur
}

// waitAnswers waits until the answers through r.entry come from tasks only,
// each of them answering, at version.
func (r *release) waitAnswers(t *testing.T, tasks []*shoalpb.Task, version string) {
	t.Helper()
	hosts := map[string]bool{}
	for _, task := range tasks {
		hosts[task.Id[:min(12, len(task.Id))]] = true
	}
	url := "http://" + r.entry.IP + ":" + webPort + "/api/healthz"
	testutil.Eventually(t, convergeTimeout, func() error {
		seen := map[string]bool{}
		for range 20 * len(tasks) {
			req := mustRequest(t, url)
			resp, err := httpClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			host, v := answerVersion(resp.Header.Get(versionHeader))
			switch {
			case resp.StatusCode != 200:
				return fmt.Errorf("GET %s: %s", url, resp.Status)
			case !hosts[host] || v != version:
				return fmt.Errorf("GET %s was answered by %q at %q, want one of the tasks %v at %s", url, host, v, slices.Sorted(maps.Keys(hosts)), version)
			}
			seen[host] = true
			if len(seen) == len(hosts) {
				return nil
			}
		}
		return fmt.Errorf("GET %s: only %v of the tasks %v answered", url, seen, hosts)
	})
}

// from brings web to replicas tasks of version if it is not there (a
// scenario run alone, or after a failed one) with a forced plain update, and
// returns its tasks.
func (r *release) from(t *testing.T, version string) []*shoalpb.Task {
	t.Helper()
	svc := r.web(t)
	if svc.GetSpec().GetReplicas() != webReplicas {
		mustShoal(t, r.entry, "service", "scale", fmt.Sprintf("web=%d", webReplicas))
	}
	image := svc.GetSpec().GetTask().GetContainer().GetImage()
	switch state := svc.GetUpdateStatus().GetState(); {
	case !strings.HasSuffix(image, ":"+version), state != shoalpb.UpdateState_UPDATE_STATE_NONE && !final(state),
		state == shoalpb.UpdateState_UPDATE_STATE_PAUSED, state == shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:
		t.Logf("web runs %s, its rollout is %s: updating it to %s first", image, state, version)
		mustShoal(t, r.entry, "service", "update", "--force", "--image", "words-web:"+version, "--update-canary", "0", "web")
	}
	return r.waitWeb(t, version, webReplicas)
}
