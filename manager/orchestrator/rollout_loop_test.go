package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/internal/testutil"
	"shoal/manager/servicespec"
	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

// runOrchestrator runs a fresh orchestrator of cfg (a new leader), logging
// to the test, until the returned stop is called.
func runOrchestrator(t *testing.T, cfg Config) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Logger = testLogger(t, slog.LevelDebug)
	o := New(cfg)
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// reportReady writes that the task runs and is ready, as the dispatcher
// would for its agent.
func reportReady(t *testing.T, s *state.Store, id string) {
	t.Helper()
	updateTask(t, s, id, func(x *shoalpb.Task) {
		x.Status = &shoalpb.TaskStatus{State: running, Message: "started", Ready: true, Timestamp: timestamppb.Now()}
	})
}

// TestRolloutFailover stops the orchestrator halfway through a rolling
// update and starts a fresh one, as a new leader would: it carries the
// rollout on from the store to COMPLETED without replacing a unit that was
// done.
func TestRolloutFailover(t *testing.T) {
	s := statetest.Cluster(t, 1)[0]
	ctx := context.Background()
	worker := node("n1")
	worker.Meta = nil
	svc := service("web", replMode, 3)
	svc.Meta = nil
	svc.Spec.UpdateConfig = &shoalpb.UpdateConfig{Parallelism: 1}
	if _, err := s.Propose(ctx,
		&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Node{Node: worker}},
		&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Service{Service: svc}},
	); err != nil {
		t.Fatal(err)
	}
	// agent reports the runnable tasks of image the orchestrator assigned
	// as running and ready, until maxReady of them are, and returns the
	// runnable tasks of image as they were read.
	agent := func(image string, maxReady int) []*shoalpb.Task {
		var out []*shoalpb.Task
		tasks := tasksOf(s, "web")
		n := 0
		for _, x := range tasks {
			if isRunnable(x) && isReady(x) && x.GetSpec().GetContainer().GetImage() == image {
				n++
			}
		}
		for _, x := range tasks {
			if !isRunnable(x) || x.GetSpec().GetContainer().GetImage() != image {
				continue
			}
			if x.Status.State == assigned && n < maxReady {
				reportReady(t, s, x.Id)
				n++
			}
			out = append(out, x)
		}
		return out
	}
	readyCount := func(tasks []*shoalpb.Task) int {
		n := 0
		for _, x := range tasks {
			if isReady(x) {
				n++
			}
		}
		return n
	}
	waitFor := func(what string, cond func() error) {
		t.Helper()
		testutil.Eventually(t, loopWait, func() error {
			if err := cond(); err != nil {
				return fmt.Errorf("%s: %w; tasks: %s", what, err, describe(tasksOf(s, "web")))
			}
			return nil
		})
	}

	stopOld := runOrchestrator(t, Config{Store: s})
	waitFor("3 tasks ready", func() error {
		if n := readyCount(agent("app:1", 3)); n != 3 {
			return fmt.Errorf("%d ready", n)
		}
		return nil
	})

	// The update, as controlapi writes it.
	testutil.Eventually(t, loopWait, func() error {
		var cur *shoalpb.Service
		s.View(func(tx state.ReadTx) { cur = tx.Service("web") })
		spec := proto.Clone(cur.Spec).(*shoalpb.ServiceSpec)
		spec.Task.Container.Image = "app:2"
		upd := servicespec.Replace(cur, spec, updating, time.Now())
		_, err := s.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
			Target: &shoalpb.StoreAction_Service{Service: upd}})
		return err
	})
	waitFor("2 units done", func() error {
		if n := readyCount(agent("app:2", 2)); n != 2 {
			return fmt.Errorf("%d replacements ready", n)
		}
		return nil
	})
	stopOld()
	done := map[uint64]string{} // slot → replacement
	for _, x := range agent("app:2", 0) {
		if isReady(x) {
			done[x.Slot] = x.Id
		}
	}
	var st *shoalpb.UpdateStatus
	s.View(func(tx state.ReadTx) { st = tx.Service("web").GetUpdateStatus() })
	if len(done) != 2 || st.GetState() != updating {
		t.Fatalf("after the first orchestrator: done units %v, update status %v", done, st)
	}

	stopNew := runOrchestrator(t, Config{Store: s})
	defer stopNew()
	waitFor("the rollout completed", func() error {
		agent("app:2", 3)
		s.View(func(tx state.ReadTx) { st = tx.Service("web").GetUpdateStatus() })
		if st.GetState() != shoalpb.UpdateState_UPDATE_STATE_COMPLETED || st.GetCompletedAt() == nil {
			return fmt.Errorf("update status %v", st)
		}
		return nil
	})
	perSlot := map[uint64]int{}
	for _, x := range tasksOf(s, "web") {
		if x.GetSpec().GetContainer().GetImage() != "app:2" {
			if isRunnable(x) {
				t.Fatalf("task %s of the old spec still runnable", x.Id)
			}
			continue
		}
		perSlot[x.Slot]++
		if id, ok := done[x.Slot]; ok && id != x.Id {
			t.Fatalf("slot %d was done with %s, and got another replacement %s", x.Slot, id, x.Id)
		}
	}
	if len(perSlot) != 3 || perSlot[1] != 1 || perSlot[2] != 1 || perSlot[3] != 1 {
		t.Fatalf("replacements per slot %v, want one each; tasks: %s", perSlot, describe(tasksOf(s, "web")))
	}
}
