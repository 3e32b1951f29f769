package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"shoal/internal/procs"
	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// churnRounds × churnReplicas containers are started and stopped by
// TestContainerChurn.
const (
	churnRounds   = 20
	churnReplicas = 50
)

// A thousand container starts and stops leave nothing behind on the node:
// no container, task network namespace, veth, task mount, cgroup, shim or
// task-logger of the service.
func TestContainerChurn(t *testing.T) {
	c := containerCluster(t, 1, 0)
	m := c.Managers[0]
	api := controlAPI(t, m)
	mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))
	// Without the image's health check: 50 execs every 2 s would be the
	// test's whole load on a 2-core machine.
	mustShoal(t, m, "service", "create", "--name", "churn", "--replicas", "0", "--no-healthcheck", testutil.AppImageName, "sleep")
	for round := 1; round <= churnRounds; round++ {
		mustShoal(t, m, "service", "scale", "churn="+fmt.Sprint(churnReplicas))
		waitConverged(t, api, "churn", churnReplicas, convergeTimeout)
		mustShoal(t, m, "service", "scale", "churn=0")
		waitConverged(t, api, "churn", 0, convergeTimeout)
	}
	tasks, err := tasksOf(api, "churn")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, convergeTimeout, func() error { return leftovers(m, tasks) })
}

// leftovers describes what the node left behind of tasks, nil if nothing.
func leftovers(n *testutil.Node, tasks []*shoalpb.Task) error {
	var found []string
	// worker/network names a task's namespace shoal-<tag>-<task>, the tag
	// being the first 8 hex digits of the SHA-256 of the data dir.
	abs, _ := filepath.Abs(n.DataDir)
	sum := sha256.Sum256([]byte(abs))
	if entries, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "shoal-"+hex.EncodeToString(sum[:])[:8]+"-") {
				found = append(found, "netns "+e.Name())
			}
		}
	}
	if out, err := n.HostCommand("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "shv") {
				found = append(found, "veth "+strings.TrimSuffix(f[1], ":"))
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, abs) && strings.Contains(line, "/rootfs ") {
				found = append(found, "mount "+strings.Fields(line)[4])
			}
		}
	}
	if entries, err := os.ReadDir("/sys/fs/cgroup/memory/shoal"); err == nil {
		for _, e := range entries {
			if e.IsDir() && containsTask(tasks, e.Name()) {
				found = append(found, "cgroup "+e.Name())
			}
		}
	}
	stragglers := procs.Find(func(cmdline string) bool {
		return strings.Contains(cmdline, abs) && (strings.Contains(cmdline, "containerd-shim") || strings.Contains(cmdline, "task-logger"))
	})
	for pid, cmdline := range stragglers {
		found = append(found, fmt.Sprintf("process %d (%s)", pid, cmdline))
	}
	if len(found) > 0 {
		return fmt.Errorf("%d things left behind: %s", len(found), strings.Join(found, "; "))
	}
	return nil
}

// containsTask reports whether id is one of tasks.
func containsTask(tasks []*shoalpb.Task, id string) bool {
	for _, task := range tasks {
		if task.GetId() == id {
			return true
		}
	}
	return false
}
