package orchestrator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"shoal/internal/testutil"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

func TestWaitingForDependencies(t *testing.T) {
	nodes := []*shoalpb.Node{node("n1"), node("n2")}
	const why = "waiting for db to be healthy (0 of 1 ready)"
	runCases(t, []reconcileCase{
		{name: "replicated: no task while waiting", svc: service("a", replMode, 3), nodes: nodes, waiting: why},
		{name: "global: no task while waiting", svc: service("g", globMode, 0), nodes: nodes, waiting: why},
		{name: "replicated job: no task while waiting", svc: service("j", rjobMode, 2), nodes: nodes, waiting: why},
		{name: "global job: no task while waiting", svc: service("gj", gjobMode, 0), nodes: nodes, waiting: why},
		{name: "tasks once the wait is over", svc: service("a", replMode, 2), nodes: nodes,
			want: []string{"create slot 1", "create slot 2"}},
	})
}

// TestLoopStartsDependentsInOrder drives the orchestrator over a real store:
// app depends on db being healthy, so it gets no task while db's tasks run
// but are not ready, and gets them once they are ready. The periodic full
// pass is off, so db's task events alone must reconcile app again.
func TestLoopStartsDependentsInOrder(t *testing.T) {
	s := statetest.Cluster(t, 1)[0]
	ctx := context.Background()
	worker := node("n1")
	worker.Meta = nil
	db := service("db", replMode, 2)
	db.Meta = nil
	app := service("app", replMode, 2, func(x *shoalpb.Service) {
		x.Spec.DependsOn = []*shoalpb.ServiceDependency{
			{Service: db.Spec.Name, Condition: shoalpb.DependencyCondition_DEPENDENCY_CONDITION_HEALTHY},
		}
	})
	app.Meta = nil
	create := func(objs ...*shoalpb.StoreAction) {
		t.Helper()
		if _, err := s.Propose(ctx, objs...); err != nil {
			t.Fatal(err)
		}
	}
	createService := func(svc *shoalpb.Service) *shoalpb.StoreAction {
		return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Service{Service: svc}}
	}
	create(&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Node{Node: worker}},
		createService(db), createService(app))
	defer runOrchestrator(t, Config{Store: s, Resync: time.Hour})()

	// waitTasks waits until the service has n tasks assigned to the worker.
	waitTasks := func(serviceID string, n int) []*shoalpb.Task {
		t.Helper()
		var tasks []*shoalpb.Task
		testutil.Eventually(t, loopWait, func() error {
			tasks = tasksOf(s, serviceID)
			for _, x := range tasks {
				if x.Status.State != assigned && x.Status.State != running {
					return fmt.Errorf("%s: task %s not assigned; tasks: %s", serviceID, x.Id, describe(tasks))
				}
			}
			if len(tasks) != n {
				return fmt.Errorf("%s: %d tasks, want %d; tasks: %s", serviceID, len(tasks), n, describe(tasks))
			}
			return nil
		})
		return tasks
	}
	// settled returns once the loop has reconciled every change written so
	// far: a service created now gets its task in a pass that took the
	// marks of every earlier event.
	settled := func(name string) {
		t.Helper()
		create(createService(service(name, replMode, 1)))
		waitTasks(name, 1)
	}
	noTasks := func(when string) {
		t.Helper()
		if tasks := tasksOf(s, "app"); len(tasks) != 0 {
			t.Fatalf("%s: app has tasks %s; want none", when, describe(tasks))
		}
	}

	dbTasks := waitTasks("db", 2)
	settled("barrier1")
	noTasks("db's tasks assigned")

	for _, x := range dbTasks {
		report(t, s, x.Id, running)
	}
	reportReady(t, s, dbTasks[0].Id)
	settled("barrier2")
	noTasks("db running, 1 of 2 ready")

	reportReady(t, s, dbTasks[1].Id)
	waitTasks("app", 2)

	// Once app has tasks, db no longer holds them back: db's task failing
	// leaves app's tasks alone.
	report(t, s, dbTasks[0].Id, failed)
	settled("barrier3")
	for _, x := range tasksOf(s, "app") {
		if !isRunnable(x) {
			t.Fatalf("app's task %s stopped after db's task failed: %s", x.Id, describe(tasksOf(s, "app")))
		}
	}
}
