package integration

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"shoal/internal/testutil"
)

// A worker killed with -9 is marked down; restarted from its data dir it is
// ready again, with the same ID.
func TestWorkerKilledIsDownThenReadyAfterRestart(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1)
	m, w := c.Managers[0], c.Workers[0]
	id := w.ID(t)
	w.Kill(t)
	waitRow(t, m, id, downTimeout, hasStatus("down"))
	w.Restart(t)
	waitRow(t, m, id, settle, hasStatus("ready"))
	if got := w.ID(t); got != id {
		t.Fatalf("after the restart the worker is node %s, want %s", got, id)
	}
	c.WaitHealthy(t)
}

// promote makes a worker a manager, demote makes it a worker again; the last
// manager cannot be demoted; a ready node is only removed with --force, and
// a removed node's daemon stops.
func TestPromoteDemoteAndRemove(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 2)
	m, w1, w2 := c.Managers[0], c.Workers[0], c.Workers[1]
	mID, w1ID, w2ID := m.ID(t), w1.ID(t), w2.ID(t)

	_, err := m.Shoal(t, "node", "demote", mID)
	wantError(t, "demote the only manager", err, mID, "last manager")
	if r, err := row(t, m, mID); err != nil || r.Role != "manager" || r.ManagerStatus != "leader" {
		t.Fatalf("after a refused demotion the manager is %+v (%v), want manager/leader", r, err)
	}

	pid := w1.PID()
	mustShoal(t, m, "node", "promote", w1ID)
	waitRow(t, m, w1ID, settle, func(r testutil.NodeRow) error {
		if r.Role != "manager" || r.ManagerStatus != "reachable" {
			return fmt.Errorf("promoted node is %s/%q, want manager/reachable", r.Role, r.ManagerStatus)
		}
		return nil
	})
	// The promoted node serves the control API on its own socket and sees
	// the cluster.
	testutil.Eventually(t, settle, func() error {
		_, err := row(t, w1, w2ID)
		return err
	})
	c.WaitHealthy(t)
	if !w1.Running() || w1.PID() != pid {
		t.Fatalf("the promoted node's daemon was restarted (pid %d, was %d); the role should switch in the running process", w1.PID(), pid)
	}

	mustShoal(t, m, "node", "demote", w1ID)
	waitRow(t, m, w1ID, settle, func(r testutil.NodeRow) error {
		if r.Role != "worker" || r.ManagerStatus != "" {
			return fmt.Errorf("demoted node is %s/%q, want worker with no manager status", r.Role, r.ManagerStatus)
		}
		return nil
	})
	testutil.Eventually(t, settle, func() error {
		_, err := w1.Shoal(t, "node", "ls")
		if err == nil {
			return errors.New("the demoted node still serves node ls")
		}
		if !strings.Contains(err.Error(), "worker") {
			return fmt.Errorf("node ls on the demoted node: %v, want a message that it is a worker", err)
		}
		return nil
	})
	c.WaitHealthy(t)
	if !w1.Running() || w1.PID() != pid {
		t.Fatalf("the demoted node's daemon was restarted (pid %d, was %d)", w1.PID(), pid)
	}
	_, err = m.Shoal(t, "node", "demote", mID)
	wantError(t, "demote the last manager after a demotion", err, mID, "last manager")

	_, err = m.Shoal(t, "node", "rm", w2ID)
	wantError(t, "rm of a ready node", err, w2ID, "ready", "--force")
	if ids := nodeIDs(t, m); !slices.Contains(ids, w2ID) {
		t.Fatalf("a refused rm removed node %s: node ls lists %v", w2ID, ids)
	}

	mustShoal(t, m, "node", "rm", "--force", w2ID)
	if ids := nodeIDs(t, m); slices.Contains(ids, w2ID) {
		t.Fatalf("node rm --force: node ls still lists %s: %v", w2ID, ids)
	}
	// The removed node learns it was removed: its daemon stops, or stays up
	// but says so.
	testutil.Eventually(t, downTimeout, func() error {
		if !w2.Running() {
			return nil
		}
		out, err := w2.Shoal(t, "info")
		if err == nil && strings.Contains(out, "removed") {
			return nil
		}
		return fmt.Errorf("the removed node still runs and its info does not mention the removal: %q %v", out, err)
	})
	if !w2.Running() && !strings.Contains(w2.Log(t), "removed") {
		t.Fatalf("the removed node's daemon stopped without saying it was removed; see %s", w2.LogPath())
	}
}

// `shoal leave` on a worker stops its daemon, clears its data dir and the
// node shows down; a manager refuses to leave without --force.
func TestLeave(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1)
	m, w := c.Managers[0], c.Workers[0]
	wID := w.ID(t)

	_, err := m.Shoal(t, "leave")
	wantError(t, "leave on a manager", err, "manager", "--force")
	if !m.Running() || !hasNode(m.DataDir) {
		t.Fatalf("a refused leave stopped the manager or cleared its data dir")
	}

	out := mustShoal(t, w, "leave")
	if !strings.Contains(out, "left") {
		t.Fatalf("leave printed %q, want a confirmation", out)
	}
	waitExit(t, w, settle)
	if err := w.ExitErr(); err != nil {
		t.Fatalf("the daemon of a node that left exited with %v, want a clean exit", err)
	}
	if hasNode(w.DataDir) {
		t.Fatalf("the data dir of a node that left still holds node.json")
	}
	waitRow(t, m, wID, downTimeout, hasStatus("down"))
	c.WaitHealthy(t)
}
