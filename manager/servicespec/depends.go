package servicespec

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// Waiting says why svc's first tasks are held back by its depends_on: the
// first dependency not met yet, e.g. "waiting for words_database to be
// healthy (1 of 3 ready)", or "" when svc may start. lookup returns the
// service of a name with its tasks (nil, nil when there is none); Waiting
// asks it for svc's own tasks too. controlapi shows the result
// (ServiceView.waiting) and the orchestrator creates no task while it is not
// empty.
//
// depends_on orders the first start only: once svc has a task, in any state
// and of any version, Waiting returns "". A dependency that is later
// updated, restarted, scaled or fails must not stop its dependents or hold
// back their restarts: that would turn a rolling update of a database into an
// outage of everything that calls it. Dependents cope with a dependency's
// outage as they would with any other, as compose's depends_on only orders
// `up`.
//
// A dependency counts the tasks of its current spec, whose desired state is
// RUNNING: for a service, those made from its current task spec (a scale
// changes spec_version but keeps its tasks); for a job, those of its current
// job_iteration. A replicated service or job needs replicas of them to meet
// the condition (none when replicas is 0), a global one all of them and at
// least one. Conditions:
//   - STARTED: the task is RUNNING (or, for a job, COMPLETE).
//   - HEALTHY: the task is RUNNING and ready, which means its health check
//     passed or it has none (or, for a job, it is COMPLETE).
//   - COMPLETED: the task is COMPLETE with exit code 0; never met by a
//     dependency that is not a job (controlapi refuses that).
func Waiting(svc *shoalpb.Service, lookup func(name string) (*shoalpb.Service, []*shoalpb.Task)) string {
	deps := svc.GetSpec().GetDependsOn()
	if len(deps) == 0 {
		return ""
	}
	if _, own := lookup(svc.GetSpec().GetName()); len(own) > 0 {
		return ""
	}
	for _, d := range deps {
		dep, tasks := lookup(d.GetService())
		if why := unmet(d, dep, tasks); why != "" {
			return why
		}
	}
	return ""
}

// IsJob reports whether services of mode run to completion.
func IsJob(mode shoalpb.ServiceMode) bool {
	switch mode {
	case shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB, shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
		return true
	}
	return false
}

// unmet says why dependency d, the service dep with its tasks, is not met
// yet, or "".
func unmet(d *shoalpb.ServiceDependency, dep *shoalpb.Service, tasks []*shoalpb.Task) string {
	name := d.GetService()
	if dep == nil {
		return fmt.Sprintf("waiting for %s, which does not exist", name)
	}
	job := IsJob(dep.GetSpec().GetMode())
	switch d.GetCondition() {
	case shoalpb.DependencyCondition_DEPENDENCY_CONDITION_STARTED:
		return tally(dep, tasks, job, func(t *shoalpb.Task) bool {
			return isState(t, shoalpb.TaskState_TASK_STATE_RUNNING) || (job && succeeded(t))
		}).reason(name, "start", "running")
	case shoalpb.DependencyCondition_DEPENDENCY_CONDITION_HEALTHY:
		return tally(dep, tasks, job, func(t *shoalpb.Task) bool {
			return (isState(t, shoalpb.TaskState_TASK_STATE_RUNNING) && t.GetStatus().GetReady()) || (job && succeeded(t))
		}).reason(name, "be healthy", "ready")
	case shoalpb.DependencyCondition_DEPENDENCY_CONDITION_COMPLETED:
		if !job {
			return fmt.Sprintf("waiting for %s to complete, which it never will: it is not a job", name)
		}
		return tally(dep, tasks, job, succeeded).reason(name, "complete", "complete")
	}
	return fmt.Sprintf("waiting for %s, whose condition %d is unknown", name, d.GetCondition())
}

// count is how many of a dependency's current tasks meet a condition, of
// how many it needs.
type count struct {
	met, want int
	global    bool
}

// tally counts the current tasks of dep (see Waiting), a job or not, that
// pass ok.
func tally(dep *shoalpb.Service, tasks []*shoalpb.Task, job bool, ok func(*shoalpb.Task) bool) count {
	var c count
	switch dep.GetSpec().GetMode() {
	case shoalpb.ServiceMode_SERVICE_MODE_GLOBAL, shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
		c.global = true
	default:
		c.want = int(dep.GetSpec().GetReplicas())
	}
	for _, t := range tasks {
		if !current(dep, t, job) {
			continue
		}
		if c.global {
			c.want++
		}
		if ok(t) {
			c.met++
		}
	}
	return c
}

// reason says why a dependency named name whose count is c is not met, or
// "": "waiting for NAME to VERB (MET of WANT NOUN)".
func (c count) reason(name, verb, noun string) string {
	switch {
	case c.global && c.want == 0:
		return fmt.Sprintf("waiting for %s to %s (no task yet)", name, verb)
	case c.met >= c.want:
		return ""
	}
	return fmt.Sprintf("waiting for %s to %s (%d of %d %s)", name, verb, c.met, c.want, noun)
}

// current reports whether t belongs to dep's current spec and is wanted:
// desired RUNNING (or COMPLETE), and made from dep's current task spec, or
// for a job of its current iteration.
func current(dep *shoalpb.Service, t *shoalpb.Task, job bool) bool {
	switch t.GetDesiredState() {
	case shoalpb.TaskState_TASK_STATE_RUNNING, shoalpb.TaskState_TASK_STATE_COMPLETE:
	default:
		return false
	}
	if job {
		return t.GetJobIteration() == dep.GetJobIteration()
	}
	return proto.Equal(t.GetSpec(), dep.GetSpec().GetTask())
}

func isState(t *shoalpb.Task, s shoalpb.TaskState) bool { return t.GetStatus().GetState() == s }

// succeeded reports whether t ran to completion with exit code 0.
func succeeded(t *shoalpb.Task) bool {
	return isState(t, shoalpb.TaskState_TASK_STATE_COMPLETE) && t.GetStatus().GetExitCode() == 0
}
