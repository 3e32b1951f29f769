package testutil

import (
	"fmt"
	"testing"
	"time"
)

// The tasks of a killed daemon keep running until stopTasks ends them.
func TestStopTasksEndsTasksOfAKilledDaemon(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 1, 0)
	m := c.Managers[0]
	if _, err := m.Shoal(t, "service", "create", "--name", "idle", "--replicas", "2", "busybox", "sleep", "1000"); err != nil {
		t.Fatalf("service create: %v", err)
	}
	m.Kill(t)
	if shims := shimsUnder(m.DataDir); len(shims) != 2 {
		t.Fatalf("after the daemon was killed %d task shims run under %s, want its 2 tasks' shims: %v", len(shims), m.DataDir, shims)
	}
	if err := m.stopTasks(); err != nil {
		t.Fatal(err)
	}
	// A shim ends once its command has ended (and been reaped).
	Eventually(t, 10*time.Second, func() error {
		if shims := shimsUnder(m.DataDir); len(shims) > 0 {
			return fmt.Errorf("after stopTasks task shims still run: %v", shims)
		}
		return nil
	})
}
