package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// threeNodes bootstraps m1 and adds m2 and m3 as voters.
func threeNodes(t *testing.T, tune func(*Config)) *testCluster {
	t.Helper()
	c := newTestCluster(t, tune)
	c.add("m1", true)
	c.leader()
	c.join("m2")
	c.join("m3")
	leader := c.leader()
	members, err := leader.s().Members()
	if err != nil || len(members) != 3 {
		t.Fatalf("members: %v, %v", members, err)
	}
	for _, m := range members {
		if !m.Voter {
			t.Fatalf("member %s is not a voter", m.ID)
		}
	}
	return c
}

func TestThreeNodesForwardFailoverRestart(t *testing.T) {
	c := threeNodes(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	leader := c.leader()
	follower := c.followers(leader)[0]
	idx, err := follower.s().Propose(ctx, createNode("n1"))
	if err != nil {
		t.Fatalf("propose on follower: %v", err)
	}
	if n := nodeOf(follower.s(), "n1"); n.GetMeta().GetVersion() != idx {
		t.Fatalf("follower does not read its own write at %d: %v", idx, n)
	}
	for _, n := range c.nodes {
		waitApplied(t, n, idx)
		if nodeOf(n.s(), "n1") == nil {
			t.Fatalf("%s: n1 missing after WaitApplied(%d)", n.id, idx)
		}
	}
	if _, err := follower.s().ApplyCommand(ctx, command(t, createNode("x"))); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ApplyCommand on a follower: got %v, want ErrNotLeader", err)
	}

	old := leader
	old.close(t)
	leader = c.leader()
	if leader == old {
		t.Fatalf("closed leader still leads")
	}
	waitLeaderChange(t, leader.s(), true)
	idx2, err := leader.s().Propose(ctx, createNode("n2"))
	if err != nil {
		t.Fatalf("propose on the new leader: %v", err)
	}
	other := c.followers(leader)[0]
	idx3, err := other.s().Propose(ctx, createNode("n3"))
	if err != nil {
		t.Fatalf("propose on the remaining follower: %v", err)
	}
	if idx3 <= idx2 {
		t.Fatalf("index went backwards: %d after %d", idx3, idx2)
	}

	c.open(old, nil)
	waitApplied(t, old, idx3)
	for _, id := range []string{"n1", "n2", "n3"} {
		if nodeOf(old.s(), id) == nil {
			t.Fatalf("restarted %s misses %s", old.id, id)
		}
	}
	c.leader() // all three agree again
}

// waitLeaderChange reads s's leadership changes until one equals want.
func waitLeaderChange(t *testing.T, s *Store, want bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case v, ok := <-s.LeaderChanges():
			if !ok {
				t.Fatalf("leader changes closed")
			}
			if v == want {
				return
			}
		case <-timeout:
			t.Fatalf("no leadership change to %v", want)
		}
	}
}

func TestSnapshotCatchUp(t *testing.T) {
	c := threeNodes(t, func(cfg *Config) {
		cfg.SnapshotThreshold = 8
		cfg.TrailingLogs = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader()
	lagging := c.followers(leader)[0]
	idx, err := leader.s().Propose(ctx, createNode("n-first"))
	if err != nil {
		t.Fatalf("propose: %v", err)
	}
	waitApplied(t, lagging, idx)
	lastSeen := lagging.s().raft.LastIndex()
	lagging.close(t)

	var last uint64
	for i := range 40 {
		if last, err = leader.s().Propose(ctx, createNode(fmt.Sprintf("n%02d", i))); err != nil {
			t.Fatalf("propose %d: %v", i, err)
		}
	}
	waitFor(t, 10*time.Second, "the leader to compact its log past the lagging node", func() bool {
		first, err := leader.s().bolt.FirstIndex()
		return err == nil && first > lastSeen+1
	})

	c.open(lagging, nil)
	waitApplied(t, lagging, last)
	var count int
	lagging.s().View(func(tx ReadTx) { count = len(tx.Nodes()) })
	if count != 41 {
		t.Fatalf("lagging node has %d nodes, want 41", count)
	}
	// Raft records the installed snapshot just after the FSM restored it.
	waitFor(t, 10*time.Second, fmt.Sprintf("a snapshot past index %d installed from the leader", lastSeen), func() bool {
		snapIndex, err := strconv.ParseUint(lagging.s().Stats()["last_snapshot_index"], 10, 64)
		return err == nil && snapIndex > lastSeen
	})
}

func TestQuorumLossAndForceNewCluster(t *testing.T) {
	c := threeNodes(t, func(cfg *Config) { cfg.LeaderWait = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader()
	idx, err := leader.s().Propose(ctx, createNode("n1"))
	if err != nil {
		t.Fatalf("propose: %v", err)
	}
	survivor := c.nodes["m3"]
	waitApplied(t, survivor, idx)
	for _, id := range []string{"m1", "m2"} {
		c.nodes[id].close(t)
	}
	waitFor(t, 10*time.Second, "the survivor to lose its leader", func() bool {
		id, _ := survivor.s().Leader()
		return id == "" && !survivor.s().IsLeader()
	})
	if _, err := survivor.s().Propose(ctx, createNode("n2")); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("propose without quorum: got %v, want ErrNoLeader", err)
	}
	if err := survivor.s().CatchUp(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("catch up without quorum: got %v, want ErrNoLeader", err)
	}

	survivor.close(t)
	c.open(survivor, func(cfg *Config) { cfg.ForceNewCluster = true })
	waitFor(t, 10*time.Second, "the survivor to lead alone", survivor.s().IsLeader)
	if err := survivor.s().Barrier(ctx); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	if nodeOf(survivor.s(), "n1") == nil {
		t.Fatalf("n1 lost by force new cluster")
	}
	members, err := survivor.s().Members()
	if err != nil || len(members) != 1 || members[0].ID != "m3" || !members[0].Voter {
		t.Fatalf("members after force new cluster: %v, %v", members, err)
	}
	if _, err := survivor.s().Propose(ctx, createNode("n2")); err != nil {
		t.Fatalf("propose after force new cluster: %v", err)
	}
}
