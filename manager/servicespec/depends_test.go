package servicespec

import (
	"testing"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

const (
	started   = shoalpb.DependencyCondition_DEPENDENCY_CONDITION_STARTED
	healthy   = shoalpb.DependencyCondition_DEPENDENCY_CONDITION_HEALTHY
	completed = shoalpb.DependencyCondition_DEPENDENCY_CONDITION_COMPLETED

	pendingState  = shoalpb.TaskState_TASK_STATE_PENDING
	runningState  = shoalpb.TaskState_TASK_STATE_RUNNING
	completeState = shoalpb.TaskState_TASK_STATE_COMPLETE
	failedState   = shoalpb.TaskState_TASK_STATE_FAILED
	shutdownState = shoalpb.TaskState_TASK_STATE_SHUTDOWN
)

// dependent returns the service "app", which depends on each of deps.
func dependent(deps ...*shoalpb.ServiceDependency) *shoalpb.Service {
	return &shoalpb.Service{Id: "app-id", Spec: &shoalpb.ServiceSpec{Name: "app", DependsOn: deps, Task: &shoalpb.TaskSpec{}}}
}

func on(name string, cond shoalpb.DependencyCondition) *shoalpb.ServiceDependency {
	return &shoalpb.ServiceDependency{Service: name, Condition: cond}
}

// svc returns a service of mode at spec version 2, image v2 (job iteration
// 2 for jobs).
func svc(name string, mode shoalpb.ServiceMode, replicas uint64) *shoalpb.Service {
	s := &shoalpb.Service{Id: name + "-id", SpecVersion: 2, Spec: &shoalpb.ServiceSpec{
		Name: name, Mode: mode, Replicas: replicas,
		Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "v2"}},
	}}
	if IsJob(mode) {
		s.JobIteration = 2
	}
	return s
}

// tk returns a task of s made from its current spec, desired RUNNING, in
// state st; opts adjust it.
func tk(s *shoalpb.Service, st shoalpb.TaskState, opts ...func(*shoalpb.Task)) *shoalpb.Task {
	t := &shoalpb.Task{ServiceId: s.Id, ServiceName: s.Spec.Name, Spec: proto.Clone(s.Spec.Task).(*shoalpb.TaskSpec),
		SpecVersion: s.SpecVersion, JobIteration: s.JobIteration, DesiredState: runningState,
		Status: &shoalpb.TaskStatus{State: st}}
	for _, o := range opts {
		o(t)
	}
	return t
}

func isReady(t *shoalpb.Task) { t.Status.Ready = true }
func oldSpec(t *shoalpb.Task) { t.Spec.Container.Image, t.SpecVersion = "v1", 1 }
func oldRun(t *shoalpb.Task)  { t.JobIteration = 1 }
func stopped(t *shoalpb.Task) { t.DesiredState = shutdownState }
func exit(code int32) func(*shoalpb.Task) {
	return func(t *shoalpb.Task) { t.Status.ExitCode = code }
}

// scaled returns s at spec version 3 with the same task spec and replicas.
func scaled(s *shoalpb.Service, replicas uint64) *shoalpb.Service {
	c := proto.Clone(s).(*shoalpb.Service)
	c.SpecVersion, c.Spec.Replicas = 3, replicas
	return c
}

func TestWaiting(t *testing.T) {
	const (
		repl = shoalpb.ServiceMode_SERVICE_MODE_REPLICATED
		glob = shoalpb.ServiceMode_SERVICE_MODE_GLOBAL
		rjob = shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB
		gjob = shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB
	)
	db := svc("db", repl, 3)
	g := svc("g", glob, 0)
	migrate := svc("migrate", rjob, 2)
	gm := svc("gm", gjob, 0)
	cases := []struct {
		name     string
		svc      *shoalpb.Service
		services []*shoalpb.Service
		tasks    []*shoalpb.Task
		want     string
	}{
		{"no depends_on", dependent(), nil, nil, ""},
		{"missing dependency", dependent(on("db", started)), nil, nil,
			"waiting for db, which does not exist"},
		{"started: not yet", dependent(on("db", started)), []*shoalpb.Service{db},
			[]*shoalpb.Task{tk(db, runningState), tk(db, pendingState), tk(db, runningState, isReady)},
			"waiting for db to start (2 of 3 running)"},
		{"started: every replica runs", dependent(on("db", started)), []*shoalpb.Service{db},
			[]*shoalpb.Task{tk(db, runningState), tk(db, runningState), tk(db, runningState)}, ""},
		{"started: tasks of an older task spec and stopped tasks do not count", dependent(on("db", started)), []*shoalpb.Service{db},
			[]*shoalpb.Task{tk(db, runningState), tk(db, runningState, oldSpec), tk(db, runningState, stopped)},
			"waiting for db to start (1 of 3 running)"},
		{"started: a scale keeps the tasks it had", dependent(on("db", started)), []*shoalpb.Service{scaled(db, 2)},
			[]*shoalpb.Task{tk(db, runningState), tk(scaled(db, 2), runningState)}, ""},
		{"started: 0 replicas", dependent(on("db", started)), []*shoalpb.Service{svc("db", repl, 0)}, nil, ""},
		{"healthy: running but not ready", dependent(on("db", healthy)), []*shoalpb.Service{db},
			[]*shoalpb.Task{tk(db, runningState, isReady), tk(db, runningState), tk(db, runningState)},
			"waiting for db to be healthy (1 of 3 ready)"},
		{"healthy: every replica ready", dependent(on("db", healthy)), []*shoalpb.Service{db},
			[]*shoalpb.Task{tk(db, runningState, isReady), tk(db, runningState, isReady), tk(db, runningState, isReady)}, ""},
		{"healthy: a ready task that ended is not", dependent(on("db", healthy)), []*shoalpb.Service{svc("db", repl, 1)},
			[]*shoalpb.Task{tk(db, failedState, isReady)}, "waiting for db to be healthy (0 of 1 ready)"},
		{"global: no task yet", dependent(on("g", started)), []*shoalpb.Service{g}, nil,
			"waiting for g to start (no task yet)"},
		{"global: every task must run", dependent(on("g", healthy)), []*shoalpb.Service{g},
			[]*shoalpb.Task{tk(g, runningState, isReady), tk(g, runningState)}, "waiting for g to be healthy (1 of 2 ready)"},
		{"global: all ready", dependent(on("g", healthy)), []*shoalpb.Service{g},
			[]*shoalpb.Task{tk(g, runningState, isReady), tk(g, runningState, isReady), tk(g, runningState, oldSpec)}, ""},
		{"completed: not a job", dependent(on("db", completed)), []*shoalpb.Service{db},
			[]*shoalpb.Task{tk(db, runningState), tk(db, runningState), tk(db, runningState)},
			"waiting for db to complete, which it never will: it is not a job"},
		{"completed: one of two", dependent(on("migrate", completed)), []*shoalpb.Service{migrate},
			[]*shoalpb.Task{tk(migrate, completeState), tk(migrate, runningState)},
			"waiting for migrate to complete (1 of 2 complete)"},
		{"completed: completions of an older run and failures do not count", dependent(on("migrate", completed)), []*shoalpb.Service{migrate},
			[]*shoalpb.Task{tk(migrate, completeState, oldRun), tk(migrate, completeState), tk(migrate, failedState, exit(1))},
			"waiting for migrate to complete (1 of 2 complete)"},
		{"completed: a non-zero exit is no success", dependent(on("migrate", completed)), []*shoalpb.Service{migrate},
			[]*shoalpb.Task{tk(migrate, completeState), tk(migrate, completeState, exit(3))},
			"waiting for migrate to complete (1 of 2 complete)"},
		{"completed: done", dependent(on("migrate", completed)), []*shoalpb.Service{migrate},
			[]*shoalpb.Task{tk(migrate, completeState), tk(migrate, completeState)}, ""},
		{"started: a job's completion has started", dependent(on("migrate", started)), []*shoalpb.Service{migrate},
			[]*shoalpb.Task{tk(migrate, completeState), tk(migrate, runningState)}, ""},
		{"completed: global job", dependent(on("gm", completed)), []*shoalpb.Service{gm},
			[]*shoalpb.Task{tk(gm, completeState), tk(gm, runningState)}, "waiting for gm to complete (1 of 2 complete)"},
		{"completed: global job without tasks", dependent(on("gm", completed)), []*shoalpb.Service{gm}, nil,
			"waiting for gm to complete (no task yet)"},
		{"the first unmet dependency", dependent(on("migrate", completed), on("db", healthy), on("g", started)),
			[]*shoalpb.Service{migrate, db, g},
			[]*shoalpb.Task{tk(migrate, completeState), tk(migrate, completeState), tk(db, runningState)},
			"waiting for db to be healthy (0 of 3 ready)"},
		{"unknown condition", dependent(on("db", 7)), []*shoalpb.Service{db}, nil,
			"waiting for db, whose condition 7 is unknown"},
		{"a service with tasks no longer waits", dependent(on("db", healthy)), []*shoalpb.Service{db, dependent()},
			[]*shoalpb.Task{tk(dependent(), shutdownState, stopped)}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lookup := func(name string) (*shoalpb.Service, []*shoalpb.Task) {
				for _, s := range c.services {
					if s.GetSpec().GetName() != name {
						continue
					}
					var tasks []*shoalpb.Task
					for _, x := range c.tasks {
						if x.ServiceId == s.Id {
							tasks = append(tasks, x)
						}
					}
					return s, tasks
				}
				return nil, nil
			}
			if got := Waiting(c.svc, lookup); got != c.want {
				t.Fatalf("Waiting = %q, want %q", got, c.want)
			}
		})
	}
}
