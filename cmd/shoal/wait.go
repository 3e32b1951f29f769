package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"shoal/manager/controlapi"
	shoalpb "shoal/proto"
)

// progress is one poll of a service and its tasks.
type progress struct {
	done    bool
	failure string   // set when the service cannot converge without help
	summary string   // "2 out of 3 tasks running"
	lines   []string // one per slot or node
	reasons []string // why tasks are not running, for a timeout message
}

// waitConverged polls the service until its tasks match its spec, drawing
// progress. It fails with the reasons when that does not happen within timeout.
func waitConverged(cmd *cobra.Command, c *client, serviceID string, timeout time.Duration) error {
	out := cmd.OutOrStdout()
	tty := out == os.Stdout && isTerminal(os.Stdout)
	deadline := time.Now().Add(timeout)
	drawn := 0
	var last string
	for {
		p, err := poll(c, serviceID)
		if err != nil {
			return err
		}
		text := p.render()
		if text != last {
			if tty && drawn > 0 {
				fmt.Fprintf(out, "\033[%dA\033[J", drawn)
			}
			io.WriteString(out, text)
			drawn, last = strings.Count(text, "\n"), text
		}
		switch {
		case p.done:
			fmt.Fprintln(out, "verify: service converged")
			warnPortProblems(cmd, c, serviceID)
			return nil
		case p.failure != "":
			return fmt.Errorf("the service cannot converge: %s", p.failure)
		case time.Now().After(deadline):
			why := "tasks are still starting"
			if len(p.reasons) > 0 {
				why = strings.Join(p.reasons, "; ")
			}
			return fmt.Errorf("the service did not converge within %s (%s): %s; it keeps trying ('shoal service ps %s' shows its tasks)", timeout, p.summary, why, serviceID)
		}
		time.Sleep(200 * time.Millisecond) // the poll interval of the display, not synchronisation
	}
}

func poll(c *client, serviceID string) (*progress, error) {
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
	return assess(view, tasks.Tasks), nil
}

// assess compares a service's tasks with its spec.
func assess(view *shoalpb.ServiceView, tasks []*shoalpb.Task) *progress {
	svc := view.Service
	job := svc.Spec.Mode == shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB || svc.Spec.Mode == shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB
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
	running, completed := uint64(0), uint64(0)
	for _, k := range keys {
		t := current[k]
		st := t.GetStatus()
		state := controlapi.TaskStateName(st.GetState())
		line := fmt.Sprintf("%s/%d: %-10s", k, view.Desired, state)
		if t.Slot == 0 {
			line = fmt.Sprintf("%.12s: %-10s", k, state)
		}
		switch {
		case st.GetState() == shoalpb.TaskState_TASK_STATE_RUNNING && proto.Equal(t.Spec, svc.Spec.Task):
			running++
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
		p.summary = fmt.Sprintf("%d out of %d tasks running", running, view.Desired)
		p.done = running == view.Desired && uint64(len(current)) == view.Desired && stopping == 0
	}
	if !p.done && svc.Spec.Task.GetRestart().GetCondition() == shoalpb.RestartCondition_RESTART_CONDITION_NONE {
		for _, t := range current {
			if s := t.GetStatus().GetState(); s == shoalpb.TaskState_TASK_STATE_FAILED || s == shoalpb.TaskState_TASK_STATE_REJECTED {
				p.failure = fmt.Sprintf("task %s failed (%s) and --restart-condition is none", controlapi.TaskName(t), t.GetStatus().GetErr())
			}
		}
	}
	return p
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
	for _, l := range p.lines {
		b.WriteString(strings.TrimRight(l, " ") + "\n")
	}
	return b.String()
}
