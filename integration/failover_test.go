package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// kill -9 of the leader: the other managers elect a new one and take writes
// (also through a follower, which forwards); the killed manager restarts
// from its data dir, catches up and becomes reachable again.
func TestLeaderKilledNewLeaderTakesWritesAndOldOneCatchesUp(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 3, 1)
	old := c.Leader(t)
	oldID := old.ID(t)
	target := c.Workers[0].ID(t)
	mustShoal(t, old, "node", "update", "--label-add", "before=kill", target)

	old.Kill(t)
	leader := c.Leader(t)
	if leader == old {
		t.Fatalf("the killed manager %s is still reported as leader", old.Name)
	}
	follower := others(c.Managers, old, leader)[0]
	mustShoal(t, follower, "node", "update", "--label-add", "via=follower", target)
	mustShoal(t, leader, "node", "update", "--label-add", "via-leader=yes", target)
	want := map[string]string{"before": "kill", "via": "follower", "via-leader": "yes"}
	waitLabels(t, leader, target, want)
	waitLabels(t, follower, target, want)
	waitRow(t, leader, oldID, settle, func(r testutil.NodeRow) error {
		if r.ManagerStatus != "unreachable" {
			return fmt.Errorf("the killed manager is %q, want unreachable", r.ManagerStatus)
		}
		return nil
	})

	old.Restart(t)
	waitLabels(t, old, target, want)
	c.WaitHealthy(t)
	mustShoal(t, old, "node", "update", "--label-add", "via-restarted=yes", target)
	want["via-restarted"] = "yes"
	for _, m := range c.Managers {
		waitLabels(t, m, target, want)
	}
}

// snapshotArgs make the leader check every second and compact its log after
// a few entries, so a manager that was down during many writes must be sent a
// snapshot.
var snapshotArgs = []string{"--raft-snapshot-threshold", "16", "--raft-trailing-logs", "4", "--raft-snapshot-interval", "1s"}

// snapshotTimeout bounds the wait for the leader's snapshot after the
// writes; the flags above ask for one every 16 entries.
const snapshotTimeout = 60 * time.Second

// A manager stopped while 200 writes happen catches up by an installed
// snapshot, because the leader no longer holds the log entries it missed.
func TestStoppedManagerCatchesUpBySnapshot(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 3, 0, testutil.WithDaemonArgs(snapshotArgs...))
	leader := c.Leader(t)
	lagging := others(c.Managers, leader)[0]
	out := mustShoal(t, lagging, "info", "--format", "{{.RaftAppliedIndex}}")
	stoppedAt, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("info: raft applied index %q: %v", out, err)
	}
	lagging.Stop(t)

	// 200 CLI processes would take long; the same API over the same socket
	// does not.
	control := shoalpb.NewControlServiceClient(dialSocket(t, leader))
	ctx := callCtx(t)
	target := leader.ID(t)
	const writes = 200
	for i := 1; i <= writes; i++ {
		_, err := control.UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: target, LabelAdd: map[string]string{"seq": strconv.Itoa(i)}})
		if err != nil {
			t.Fatalf("write %d of %d: %v", i, writes, err)
		}
	}
	// Only once the leader has snapshotted past the lagging manager's last
	// entry (and dropped the log behind it) is a snapshot the only way back.
	// If it has not, the catch-up is still checked, by log replay.
	snapshotted := testutil.Poll(snapshotTimeout, func() error {
		index, err := latestSnapshot(leader)
		if err != nil {
			return err
		}
		if index <= stoppedAt+10 {
			return fmt.Errorf("the leader's latest snapshot is at index %d; the stopped manager has %d", index, stoppedAt)
		}
		return nil
	})
	if snapshotted != nil {
		t.Errorf("with %v the leader took no snapshot after %d writes: %v", snapshotArgs, writes, snapshotted)
	}

	lagging.Restart(t)
	waitLabels(t, lagging, target, map[string]string{"seq": strconv.Itoa(writes)})
	if log := lagging.Log(t); snapshotted == nil && !strings.Contains(strings.ToLower(log), "installed remote snapshot") {
		t.Errorf("%s caught up without installing a snapshot from the leader (no \"installed remote snapshot\" in %s)", lagging.Name, lagging.LogPath())
	}
	c.WaitHealthy(t)
}

// latestSnapshot returns the highest index of the snapshots in n's data dir
// (raft's FileSnapshotStore: raft/snapshots/<id>/meta.json).
func latestSnapshot(n *testutil.Node) (uint64, error) {
	metas, err := filepath.Glob(filepath.Join(n.DataDir, "raft", "snapshots", "*", "meta.json"))
	if err != nil {
		return 0, err
	}
	if len(metas) == 0 {
		return 0, fmt.Errorf("%s has taken no snapshot yet", n.Name)
	}
	var latest uint64
	for _, path := range metas {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		var meta struct{ Index uint64 }
		if err := json.Unmarshal(b, &meta); err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		latest = max(latest, meta.Index)
	}
	return latest, nil
}

// Losing two of three managers: a write on the survivor fails with an
// explanation and the way out, whether the survivor was the leader or a
// follower; `shoal daemon --force-new-cluster` on the survivor brings the
// cluster back as one manager with all its state.
func TestQuorumLossThenForceNewCluster(t *testing.T) {
	t.Parallel()
	for _, survivorWasLeader := range []bool{true, false} {
		name := "survivor was a follower"
		if survivorWasLeader {
			name = "survivor was the leader"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := testutil.NewCluster(t, 3, 0)
			leader := c.Leader(t)
			survivor := others(c.Managers, leader)[0]
			if survivorWasLeader {
				survivor = leader
			}
			target := survivor.ID(t)
			mustShoal(t, survivor, "node", "update", "--label-add", "kept=yes", target)
			ids := nodeIDs(t, survivor)
			for _, m := range others(c.Managers, survivor) {
				m.Kill(t)
			}

			// The write gives up by itself (the CLI's own deadline is far
			// longer) and says what happened and what to do. The recovery
			// below is tested even if the message is wrong.
			_, err := survivor.Shoal(t, "node", "update", "--label-add", "lost=write", target)
			if problem := errorProblem(err, "quorum lost", "--force-new-cluster"); problem != "" {
				t.Errorf("write without quorum: %s", problem)
			}

			survivor.Stop(t)
			survivor.Restart(t, "--force-new-cluster")
			if got := c.Leader(t); got != survivor {
				t.Fatalf("after --force-new-cluster the leader is %s, want %s", got.Name, survivor.Name)
			}
			mustShoal(t, survivor, "node", "update", "--label-add", "after=recovery", target)
			got, err := labels(t, survivor, target)
			if err != nil {
				t.Fatal(err)
			}
			// The refused write may or may not have been kept; the rest must.
			if !strings.Contains(got, "kept:yes") || !strings.Contains(got, "after:recovery") {
				t.Fatalf("after --force-new-cluster the labels are %s, want kept:yes and after:recovery", got)
			}
			if got := nodeIDs(t, survivor); strings.Join(got, " ") != strings.Join(ids, " ") {
				t.Fatalf("after --force-new-cluster the survivor lists %v, want %v", got, ids)
			}
			waitRow(t, survivor, target, settle, func(r testutil.NodeRow) error {
				if r.Status != "ready" || r.ManagerStatus != "leader" {
					return fmt.Errorf("the recovered manager is %s/%q, want ready/leader", r.Status, r.ManagerStatus)
				}
				return nil
			})
			// It stays a one-manager cluster across a plain restart.
			survivor.Stop(t)
			survivor.Restart(t)
			mustShoal(t, survivor, "node", "update", "--label-add", "after=restart", target)
			if got, err := labels(t, survivor, target); err != nil || !strings.Contains(got, "after:restart") || !strings.Contains(got, "kept:yes") {
				t.Fatalf("after a restart of the recovered manager the labels are %s (%v)", got, err)
			}
		})
	}
}
