package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// containerCluster starts a cluster whose nodes run the containerd runtime,
// each in a network namespace of its own ("host") with its own containerd.
func containerCluster(t *testing.T, managers, workers int, opts ...testutil.Option) *testutil.Cluster {
	t.Helper()
	testutil.RequireRoot(t, containerdRuntime.needs...)
	return testutil.NewCluster(t, managers, workers, slices.Concat(containerdRuntime.options, opts)...)
}

// loadImages loads demo images on n only: the other nodes must fetch them
// from the cluster.
func loadImages(t *testing.T, n *testutil.Node, refs ...string) {
	t.Helper()
	for _, ref := range refs {
		app, version, _ := strings.Cut(ref, ":")
		out := mustShoal(t, n, "image", "load", "-i", testutil.DemoImage(t, app, version))
		if !strings.Contains(out, "docker.io/library/"+ref) {
			t.Fatalf("image load of %s printed %q", ref, out)
		}
	}
}

// taskIP is the address (without prefix length) the allocator gave a task.
func taskIP(t *testing.T, task *shoalpb.Task) string {
	t.Helper()
	p, err := netip.ParsePrefix(task.GetAddress())
	if err != nil {
		t.Fatalf("task %s has address %q: %v", task.GetId(), task.GetAddress(), err)
	}
	return p.Addr().String()
}

// nodeOf returns the cluster node a task runs on.
func nodeOf(t *testing.T, c *testutil.Cluster, task *shoalpb.Task) *testutil.Node {
	t.Helper()
	for _, n := range c.Nodes() {
		if n.ID(t) == task.GetNodeId() {
			return n
		}
	}
	t.Fatalf("task %s runs on node %s, which is not in the cluster", task.GetId(), task.GetNodeId())
	return nil
}

// The demo apps run as real containers spread over three hosts: the images
// are loaded on the manager only, the workers fetch them from the cluster,
// the apps find each other by service name (the nodes' DNS answers the
// services' VIPs, which every node balances over the ready tasks), and the
// web front's port, published through the routing mesh, answers on every
// node, including one that runs no web task.
func TestDemoAppsAcrossHosts(t *testing.T) {
	c := containerCluster(t, 1, 2)
	m := c.Managers[0]
	api := controlAPI(t, m)
	loadImages(t, m, "words-db:v1", "words-app:v1", "words-web:v1")

	mustShoal(t, m, "service", "create", "--name", "db", "--constraint", "node.role==worker",
		"--mount", "type=volume,source=words,target=/data", "words-db:v1")
	db := waitConverged(t, api, "db", 1, convergeTimeout)[0]
	mustShoal(t, m, "service", "create", "--name", "app", "--replicas", "2",
		"--env", "DB_HOST=db:7000", "words-app:v1")
	apps := waitConverged(t, api, "app", 2, convergeTimeout)
	mustShoal(t, m, "service", "create", "--name", "web", "--constraint", "node.id!="+db.GetNodeId(),
		"--env", "APP_NAME=app:8080", "--env", "USERS=demo:secret",
		"--publish", "published=8088,target=80", "words-web:v1")
	web := waitConverged(t, api, "web", 1, convergeTimeout)[0]
	if web.GetNodeId() == db.GetNodeId() {
		t.Fatalf("web and db both run on %s; the constraint should keep them apart", db.GetNodeId())
	}
	for _, task := range append([]*shoalpb.Task{db, web}, apps...) {
		if task.GetStatus().GetContainerId() == "" {
			t.Errorf("task %s reports no container ID: %s", task.GetId(), describe(task.GetStatus()))
		}
	}

	for _, n := range c.Nodes() {
		url := "http://" + n.IP + ":8088/api/words"
		word := "shoal-" + n.Name
		post := func() error {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(word))
			req.SetBasicAuth("demo", "secret")
			return do(httpClient, req, http.StatusOK, http.StatusCreated)
		}
		testutil.Eventually(t, convergeTimeout, post)
		testutil.Eventually(t, convergeTimeout, func() error {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.SetBasicAuth("demo", "secret")
			body, err := get(httpClient, req)
			if err != nil {
				return err
			}
			if !strings.Contains(body, word) {
				return fmt.Errorf("GET %s = %q, want the word posted through it", url, body)
			}
			return nil
		})
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if err := do(httpClient, req, http.StatusUnauthorized); err != nil {
			t.Errorf("without credentials: %v", err)
		}
	}
}

// httpClient never reuses a connection, so that every request crosses the
// network path again.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// do sends req with client and wants one of the given status codes.
func do(client *http.Client, req *http.Request, want ...int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, code := range want {
		if resp.StatusCode == code {
			return nil
		}
	}
	return fmt.Errorf("%s %s = %s %q, want status %v", req.Method, req.URL, resp.Status, body, want)
}

// get sends req with client, wants 200 and returns the body.
func get(client *http.Client, req *http.Request) (string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s = %s %q", req.Method, req.URL, resp.Status, body)
	}
	return string(body), nil
}
