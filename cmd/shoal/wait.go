package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"shoal/manager/controlapi"
	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// progress is one poll of a service and its tasks.
type progress struct {
	done    bool
	failure string   // set when the service cannot converge without help
	summary string   // "2 out of 3 tasks running"
	update  string   // the rollout's state line, "" without one
	lines   []string // one per slot or node
	reasons []string // why tasks are not running, for a timeout message
	// stopped is set when the followed rollout stopped short (paused,
	// rolled back): the error the command exits with.
	stopped string
	// canary is set when the followed update waits on its canaries for a
	// promotion by hand: what to tell the user, the wait being over.
	canary string
}

// follow says which rollout a waiting command follows besides convergence.
type follow int

const (
	// followNone: convergence only (create, scale, a change that replaced
	// no task spec, a job).
	followNone follow = iota
	// followUpdate: until the update is COMPLETED; it fails when the update
	// pauses or is rolled back, and ends at a canary waiting for a promotion.
	followUpdate
	// followRollback: until the rollback is ROLLBACK_COMPLETED.
	followRollback
)

// followOf is what a command follows after its change returned svc: the
// rollout the change started, if it started one.
func followOf(svc *shoalpb.Service) follow {
	st := svc.GetUpdateStatus()
	switch {
	case st == nil || st.GetToVersion() != svc.GetSpecVersion():
		return followNone
	case servicespec.RollingBack(svc):
		return followRollback
	}
	return followUpdate
}

// waitConverged polls the service until its tasks match its spec (and the
// rollout followed is complete), drawing progress. It fails with the reasons
// when that does not happen within timeout, or at once when the rollout
// stops short.
func waitConverged(cmd *cobra.Command, c *client, serviceID string, timeout time.Duration, f follow) error {
	out := cmd.OutOrStdout()
	screen := newScreen(out)
	deadline := time.Now().Add(timeout)
	for {
		p, err := poll(c, serviceID, f)
		if err != nil {
			return err
		}
		screen.show(p.render())
		switch {
		case p.done:
			fmt.Fprintln(out, "verify: service converged")
			warnPortProblems(cmd, c, serviceID)
			return nil
		case p.stopped != "":
			return errors.New(p.stopped)
		case p.canary != "":
			fmt.Fprintln(out, p.canary)
			return nil
		case p.failure != "":
			return fmt.Errorf("the service cannot converge: %s", p.failure)
		case time.Now().After(deadline):
			why := "tasks are still starting"
			if len(p.reasons) > 0 {
				why = strings.Join(p.reasons, "; ")
			}
			summary := p.summary
			if p.update != "" {
				summary += "; " + p.update
			}
			return fmt.Errorf("the service did not converge within %s (%s): %s; it keeps trying ('shoal service ps %s' shows its tasks)", timeout, summary, why, serviceID)
		}
		time.Sleep(200 * time.Millisecond) // the poll interval of the display, not synchronisation
	}
}

// screen draws a progress display: on a terminal each new text replaces
// the last one in place; elsewhere (a pipe, a log) each change is appended.
type screen struct {
	out   io.Writer
	tty   bool
	drawn int // lines of the text on the terminal
	last  string
}

func newScreen(out io.Writer) *screen {
	return &screen{out: out, tty: out == os.Stdout && isTerminal(os.Stdout)}
}

// show draws text unless it is the one already shown.
func (s *screen) show(text string) {
	if text == s.last {
		return
	}
	if s.tty && s.drawn > 0 {
		fmt.Fprintf(s.out, "\033[%dA\033[J", s.drawn)
	}
	io.WriteString(s.out, text)
	s.drawn, s.last = strings.Count(text, "\n"), text
}

func poll(c *client, serviceID string, f follow) (*progress, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.control().ListServices(ctx, &shoalpb.ListServicesRequest{Filters: map[string]string{"id": serviceID}})
	if err != nil {
		return nil, err
	}
	if len(list.Services) != 1 {
		return nil, fmt.Errorf("service %s was removed while waiting for it", serviceID)
	}
	view := list.Services[0]
	tasks, err := c.control().ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": serviceID}})
	if err != nil {
		return nil, err
	}
	return assess(view, tasks.Tasks, f), nil
}

// assess compares a service's tasks with its spec, and the state of the
// rollout followed with where it should end.
func assess(view *shoalpb.ServiceView, tasks []*shoalpb.Task, f follow) *progress {
	svc := view.Service
	job := servicespec.IsJob(svc.Spec.Mode)
	p := &progress{}
	current := map[string]*shoalpb.Task{} // newest task per slot/node
	stopping := 0
	for _, t := range tasks {
		key := fmt.Sprintf("%d", t.Slot)
		if t.Slot == 0 {
			key = t.NodeId
		}
		if t.DesiredState != shoalpb.TaskState_TASK_STATE_RUNNING {
			if t.GetStatus().GetState() <= shoalpb.TaskState_TASK_STATE_RUNNING && t.NodeId != "" {
				stopping++
			}
			continue
		}
		if prev := current[key]; prev == nil || t.Meta.GetCreatedAt().AsTime().After(prev.Meta.GetCreatedAt().AsTime()) {
			current[key] = t
		}
	}
	keys := make([]string, 0, len(current))
	for k := range current {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	running, completed, updated := uint64(0), uint64(0), uint64(0)
	var replacements []*shoalpb.Task
	for _, k := range keys {
		t := current[k]
		st := t.GetStatus()
		state := controlapi.TaskStateName(st.GetState())
		line := fmt.Sprintf("%s/%d: %-10s", k, view.Desired, state)
		if t.Slot == 0 {
			line = fmt.Sprintf("%.12s: %-10s", k, state)
		}
		upToDate := proto.Equal(t.Spec, svc.Spec.Task)
		if upToDate {
			replacements = append(replacements, t)
			if st.GetState() == shoalpb.TaskState_TASK_STATE_RUNNING && st.GetReady() {
				updated++
			}
		}
		switch {
		case st.GetState() == shoalpb.TaskState_TASK_STATE_RUNNING && upToDate && st.GetReady():
			running++
		case st.GetState() == shoalpb.TaskState_TASK_STATE_RUNNING && upToDate:
			// Running, but its health or readiness check has not passed
			// yet: it takes no traffic, so the service has not converged.
			p.reasons = appendUnique(p.reasons, "a task is running but not ready yet")
		case st.GetState() == shoalpb.TaskState_TASK_STATE_COMPLETE && job:
			completed++
		case st.GetErr() != "":
			line += " " + st.GetErr()
			p.reasons = appendUnique(p.reasons, st.GetErr())
		case st.GetState() == shoalpb.TaskState_TASK_STATE_PENDING && st.GetMessage() != "":
			line += " " + st.GetMessage()
			p.reasons = appendUnique(p.reasons, st.GetMessage())
		}
		p.lines = append(p.lines, line)
	}
	if job {
		p.summary = fmt.Sprintf("%d out of %d tasks completed", view.Completed, view.Desired)
		p.done = view.Completed >= view.Desired
	} else {
		p.summary = fmt.Sprintf("%d out of %d tasks running and ready", running, view.Desired)
		p.done = running == view.Desired && uint64(len(current)) == view.Desired && stopping == 0
	}
	if !p.done && svc.Spec.Task.GetRestart().GetCondition() == shoalpb.RestartCondition_RESTART_CONDITION_NONE {
		for _, t := range current {
			if s := t.GetStatus().GetState(); s == shoalpb.TaskState_TASK_STATE_FAILED || s == shoalpb.TaskState_TASK_STATE_REJECTED {
				p.failure = fmt.Sprintf("task %s failed (%s) and --restart-condition is none", servicespec.TaskName(t), t.GetStatus().GetErr())
			}
		}
	}
	if svc.GetUpdateStatus() != nil && !job {
		p.update = updateLine(svc, updated, view.Desired)
	}
	p.followRollout(svc, f, replacements)
	return p
}

// followRollout holds done back until the followed rollout is complete,
// and says why the wait ends early when it stopped short or waits on its
// canaries.
func (p *progress) followRollout(svc *shoalpb.Service, f follow, replacements []*shoalpb.Task) {
	st := svc.GetUpdateStatus()
	if f == followNone || st == nil {
		return
	}
	name := svc.GetSpec().GetName()
	msg := st.GetMessage()
	if msg == "" {
		msg = "no reason given"
	}
	hint := fmt.Sprintf("; 'shoal service ps %s' shows the tasks", name)
	state := st.GetState()
	if f == followRollback {
		switch state {
		case shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED:
			return
		case shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED:
		case shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:
			p.stopped = because("rollback paused: ", msg) + hint
		default:
			p.stopped = fmt.Sprintf("the rollback was replaced by an update to version %d (now %s); follow it with 'shoal service ps %s'", st.GetToVersion(), controlapi.UpdateStateName(state), name)
		}
		p.done = false
		return
	}
	switch state {
	case shoalpb.UpdateState_UPDATE_STATE_COMPLETED:
		return
	case shoalpb.UpdateState_UPDATE_STATE_UPDATING:
	case shoalpb.UpdateState_UPDATE_STATE_CANARY:
		// Without auto-promotion the command ends once the canaries serve
		// (a canary that fails moves the update on to its failure action).
		if servicespec.RolloutConfig(svc).GetAutoPromoteMs() == 0 && allReady(replacements) {
			var b strings.Builder
			for _, t := range replacements {
				fmt.Fprintf(&b, "canary %s: %s%s\n", servicespec.TaskName(t), controlapi.TaskStateName(t.GetStatus().GetState()), healthText(t))
			}
			fmt.Fprintf(&b, "canaries ready: promote with 'shoal service promote %s' or roll back with 'shoal service rollback %s'", name, name)
			p.canary = b.String()
		}
	case shoalpb.UpdateState_UPDATE_STATE_PAUSED:
		p.stopped = because("update paused: ", msg) + hint + fmt.Sprintf("; fix the cause and update again, or roll back with 'shoal service rollback %s'", name)
	default: // the failure action rolled it back
		p.stopped = because("update rolled back: ", msg) + hint
	}
	p.done = false
}

// allReady reports whether there are tasks and all of them run and are ready.
func allReady(tasks []*shoalpb.Task) bool {
	for _, t := range tasks {
		if t.GetStatus().GetState() != shoalpb.TaskState_TASK_STATE_RUNNING || !t.GetStatus().GetReady() {
			return false
		}
	}
	return len(tasks) > 0
}

// because is what happened followed by why: the status message, which
// may say what happened itself ("update paused: 2 of 3 replacements failed").
func because(what, msg string) string {
	if strings.HasPrefix(msg, what) {
		return msg
	}
	return what + msg
}

// updateLine is the state of svc's rollout: "update: updating 2/3
// (start-first, parallelism 1)", and its message after a dash.
func updateLine(svc *shoalpb.Service, updated, total uint64) string {
	st := svc.GetUpdateStatus()
	c := servicespec.RolloutConfig(svc)
	how := orderName(c.GetOrder())
	if c.GetParallelism() == 0 {
		how += ", all at once"
	} else {
		how += fmt.Sprintf(", parallelism %d", c.GetParallelism())
	}
	if n := c.GetCanary(); n > 0 && !servicespec.RollingBack(svc) && !st.GetPromoted() {
		how += fmt.Sprintf(", canary %d", n)
	}
	line := fmt.Sprintf("update: %s %d/%d (%s)", controlapi.UpdateStateName(st.GetState()), updated, total, how)
	if msg := st.GetMessage(); msg != "" {
		line += " — " + msg
	}
	return line
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func (p *progress) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "overall progress: %s\n", p.summary)
	if p.update != "" {
		b.WriteString(p.update + "\n")
	}
	for _, l := range p.lines {
		b.WriteString(strings.TrimRight(l, " ") + "\n")
	}
	return b.String()
}
