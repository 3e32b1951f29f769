package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"shoal/internal/format"
	"shoal/manager/controlapi"
	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Manage services (on a manager)"}
	cmd.AddCommand(newServiceCreateCmd(g), newServiceLsCmd(g), newServicePsCmd(g), newServiceInspectCmd(g),
		newServiceScaleCmd(g), newServiceUpdateCmd(g), newServiceRollbackCmd(g), newServicePromoteCmd(g), newServiceRmCmd(g), newServiceLogsCmd(g))
	return cmd
}

// waitFlags are --detach and --timeout of commands that wait for convergence.
type waitFlags struct {
	detach  bool
	timeout time.Duration
}

func (w *waitFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&w.detach, "detach", "d", false, "return at once instead of waiting for the service to converge")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 2*time.Minute, "how long to wait for convergence before failing")
}

// printAndWait prints what names the service (its ID after a create, its
// name otherwise) and, unless --detach, waits for it as f says.
func (w *waitFlags) printAndWait(cmd *cobra.Command, c *client, svc *shoalpb.Service, printed string, f follow) error {
	fmt.Fprintln(cmd.OutOrStdout(), printed)
	if w.detach {
		return nil
	}
	return c.explain(waitConverged(cmd, c, svc.Id, w.timeout, f))
}

func newServiceCreateCmd(g *globals) *cobra.Command {
	f := &specFlags{}
	w := &waitFlags{}
	var name string
	cmd := &cobra.Command{
		Use:   "create [flags] IMAGE [COMMAND] [ARG...]",
		Short: "Create a service and wait until its tasks run",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := newSpec()
			spec.Name = name
			var err error
			if spec.Mode, err = parseMode(f.mode); err != nil {
				return err
			}
			if err := f.applyScalars(spec, cmd.Flags(), true); err != nil {
				return err
			}
			if err := f.applyLists(spec); err != nil {
				return err
			}
			spec.Task.Container.Image = args[0]
			spec.Task.Container.Args = args[1:]
			if name == "" {
				return fmt.Errorf("--name: a service needs a name, e.g. --name web")
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := callCtx()
			svc, err := c.control().CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: spec})
			cancel()
			if err != nil {
				return c.explain(err)
			}
			return w.printAndWait(cmd, c, svc, svc.Id, followNone)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "service name (required)")
	f.registerScalars(cmd.Flags())
	f.registerLists(cmd.Flags())
	w.register(cmd)
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// serviceRow is one line of `service ls`.
type serviceRow struct {
	ID       string
	Name     string
	Mode     string
	Replicas string
	Image    string
	Ports    string
	// Update is the state of the last rollout ("updating", "paused", …;
	// empty before the first one), for --format only.
	Update string
}

func newServiceLsCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List services",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &shoalpb.ListServicesRequest{Filters: map[string]string{}}
			for _, f := range filters {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					return fmt.Errorf("--filter %q: use KEY=VALUE, e.g. --filter name=web", f)
				}
				req.Filters[k] = v
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				resp, err := c.control().ListServices(ctx, req)
				if err != nil {
					return err
				}
				return printServices(cmd.OutOrStdout(), resp.Services, quiet, tmpl)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "KEY=VALUE with KEY one of name, id, mode, label")
	return cmd
}

// printServices prints service views as 'service ls' does.
func printServices(out io.Writer, views []*shoalpb.ServiceView, quiet bool, tmpl string) error {
	var rows []serviceRow
	for _, v := range views {
		if quiet {
			fmt.Fprintln(out, v.Service.Id)
			continue
		}
		rows = append(rows, serviceRow{
			ID: v.Service.Id, Name: v.Service.Spec.Name, Mode: controlapi.ModeName(v.Service.Spec.Mode),
			Replicas: replicasText(v), Image: unpinned(v.Service.Spec.Task.GetContainer().GetImage()), Ports: portsText(v.Service.Spec.Task.GetPorts()),
			Update: updateStateText(v.Service),
		})
	}
	if quiet {
		return nil
	}
	return format.Rows(out, tmpl, `table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}`, rows)
}

// updateStateText is the state of svc's last rollout, "" before the first.
func updateStateText(svc *shoalpb.Service) string {
	if st := svc.GetUpdateStatus(); st != nil {
		return controlapi.UpdateStateName(st.GetState())
	}
	return ""
}

func replicasText(v *shoalpb.ServiceView) string {
	text := fmt.Sprintf("%d/%d", v.Running, v.Desired)
	switch v.Service.Spec.Mode {
	case shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB, shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
		text += fmt.Sprintf(" (%d/%d completed)", v.Completed, v.Desired)
	}
	if max := v.Service.Spec.Task.GetPlacement().GetMaxReplicasPerNode(); max > 0 {
		text += fmt.Sprintf(" (max %d per node)", max)
	}
	if v.Waiting != "" {
		text += " (" + v.Waiting + ")"
	}
	return text
}

func portsText(ports []*shoalpb.PortConfig) string {
	var out []string
	for _, p := range ports {
		if p.PublishedPort == 0 {
			out = append(out, fmt.Sprintf("%d/%s", p.TargetPort, p.Protocol))
			continue
		}
		out = append(out, fmt.Sprintf("*:%d->%d/%s", p.PublishedPort, p.TargetPort, p.Protocol))
	}
	return strings.Join(out, ",")
}

func newServiceInspectCmd(g *globals) *cobra.Command {
	var tmpl string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "inspect [--pretty] [--format F] SERVICE [SERVICE...]",
		Short: "Show services in detail (JSON): spec, update and rollback configs, update status, endpoint mode, VIP, ports and the current endpoints",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				var list []*shoalpb.Service
				var problems [][]portProblem
				for _, ref := range args {
					svc, err := c.control().GetService(ctx, &shoalpb.GetServiceRequest{Service: ref})
					if err != nil {
						return err
					}
					list = append(list, svc)
					p, err := portProblemsOf(ctx, c, svc)
					if err != nil {
						return err
					}
					problems = append(problems, p)
				}
				full, err := inspectServices(ctx, c, list, problems)
				if err != nil {
					return err
				}
				if pretty {
					for _, svc := range full {
						printServicePretty(cmd.OutOrStdout(), svc, time.Now())
					}
					return nil
				}
				if tmpl != "" && tmpl != "json" {
					for _, svc := range full {
						if err := format.One(cmd.OutOrStdout(), tmpl, svc); err != nil {
							return err
						}
					}
					return nil
				}
				return printInspectJSON(cmd, full)
			})
		},
	}
	cmd.Flags().StringVarP(&tmpl, "format", "f", "", "Go template over the service ({{.Spec.Name}}, {{.EndpointMode}}, {{.Ports}}, {{.UpdateStatus.State}}, {{range .Endpoints}}{{.Task}} {{.Node}} {{.Addresses}}{{end}}), or json")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "human-readable output")
	return cmd
}

func newServiceScaleCmd(g *globals) *cobra.Command {
	w := &waitFlags{}
	cmd := &cobra.Command{
		Use:   "scale SERVICE=REPLICAS [SERVICE=REPLICAS...]",
		Short: "Change the number of tasks of replicated services",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			type target struct {
				ref string
				n   uint64
			}
			var targets []target
			for _, a := range args {
				ref, n, ok := strings.Cut(a, "=")
				count, err := strconv.ParseUint(n, 10, 64)
				if !ok || ref == "" || err != nil {
					return fmt.Errorf("%q: use SERVICE=REPLICAS with a number of replicas of 0 or more, e.g. web=3", a)
				}
				targets = append(targets, target{ref, count})
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var ids []string
			for _, t := range targets {
				ctx, cancel := callCtx()
				svc, err := c.control().GetService(ctx, &shoalpb.GetServiceRequest{Service: t.ref})
				if err == nil && svc.Spec.Mode != shoalpb.ServiceMode_SERVICE_MODE_REPLICATED && svc.Spec.Mode != shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB {
					cancel()
					return fmt.Errorf("%s: a %s service cannot be scaled; only replicated services and jobs have replicas", t.ref, controlapi.ModeName(svc.Spec.Mode))
				}
				if err == nil {
					svc.Spec.Replicas = t.n
					svc, err = c.control().UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: svc.Id, Version: svc.Meta.GetVersion(), Spec: svc.Spec})
				}
				cancel()
				if err != nil {
					return c.explain(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s scaled to %d\n", svc.Spec.Name, t.n)
				ids = append(ids, svc.Id)
			}
			if w.detach {
				return nil
			}
			for _, id := range ids {
				if err := waitConverged(cmd, c, id, w.timeout, followNone); err != nil {
					return c.explain(err)
				}
			}
			return nil
		},
	}
	w.register(cmd)
	return cmd
}

func newServiceRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm SERVICE [SERVICE...]",
		Aliases: []string{"remove"},
		Short:   "Remove services (their tasks are stopped)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				for _, ref := range args {
					if _, err := c.control().RemoveService(ctx, &shoalpb.RemoveServiceRequest{Service: ref}); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), ref)
				}
				return nil
			})
		},
	}
}

// taskRow is one line of `service ps` and `node ps`.
type taskRow struct {
	ID           string
	Name         string
	Image        string
	Node         string
	DesiredState string
	CurrentState string
	Error        string
	Ports        string
	// Address and ContainerID are for --format templates only (scripts
	// that wire tasks together by address until service DNS exists).
	Address     string
	ContainerID string
}

func taskRows(tasks []*shoalpb.Task, nodes map[string]string, now time.Time) []taskRow {
	sort.SliceStable(tasks, func(i, j int) bool {
		a, b := tasks[i], tasks[j]
		if a.ServiceName != b.ServiceName {
			return a.ServiceName < b.ServiceName
		}
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		if a.Slot == 0 && a.NodeId != b.NodeId {
			return a.NodeId < b.NodeId
		}
		// The slot's current task first, then its history, newest first.
		if ar, br := a.DesiredState == shoalpb.TaskState_TASK_STATE_RUNNING, b.DesiredState == shoalpb.TaskState_TASK_STATE_RUNNING; ar != br {
			return ar
		}
		return a.GetMeta().GetCreatedAt().AsTime().After(b.GetMeta().GetCreatedAt().AsTime())
	})
	rows := make([]taskRow, 0, len(tasks))
	var prevSlot string
	for _, t := range tasks {
		name := servicespec.TaskName(t)
		slot := strings.TrimSuffix(name, "."+t.Id)
		display := slot
		if slot == prevSlot {
			display = ` \_ ` + slot
		}
		prevSlot = slot
		st := t.GetStatus()
		current := controlapi.TaskStateName(st.GetState())
		if ts := st.GetTimestamp(); ts != nil {
			current += " " + ago(now.Sub(ts.AsTime()))
		}
		current += healthText(t)
		errText := st.GetErr()
		if errText == "" && st.GetState() == shoalpb.TaskState_TASK_STATE_PENDING {
			errText = st.GetMessage()
		}
		node := nodes[t.NodeId]
		if node == "" {
			node = t.NodeId
		}
		rows = append(rows, taskRow{
			ID: t.Id, Name: display, Image: unpinned(t.Spec.GetContainer().GetImage()), Node: node,
			DesiredState: controlapi.TaskStateName(t.DesiredState), CurrentState: current, Error: errText,
			Ports:   portsText(t.Spec.GetPorts()),
			Address: strings.SplitN(t.GetAddress(), "/", 2)[0], ContainerID: st.GetContainerId(),
		})
	}
	return rows
}

// healthText is what a running task's checks say, as Docker shows it after
// the state: " (healthy, ready)", " (starting)", " (not ready)"; empty for a
// task without checks.
func healthText(t *shoalpb.Task) string {
	st := t.GetStatus()
	if st.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING {
		return ""
	}
	var parts []string
	h := st.GetHealth()
	if h != shoalpb.HealthState_HEALTH_NONE {
		parts = append(parts, controlapi.HealthName(h))
	}
	switch {
	case st.GetReady() && (h != shoalpb.HealthState_HEALTH_NONE || t.GetSpec().GetContainer().GetReadiness() != nil):
		parts = append(parts, "ready")
	case !st.GetReady() && (h == shoalpb.HealthState_HEALTH_HEALTHY || h == shoalpb.HealthState_HEALTH_NONE):
		// Starting or unhealthy says it already.
		parts = append(parts, "not ready")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func ago(d time.Duration) string {
	switch {
	case d < time.Second:
		return "less than a second ago"
	case d < time.Minute:
		return plural(int(d.Seconds()), "second") + " ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	}
	return plural(int(d.Hours()), "hour") + " ago"
}

// plural is "1 second", "2 seconds".
func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

const taskTable = `table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}`

// printTasks prints tasks as `service ps` does.
func printTasks(ctx context.Context, cmd *cobra.Command, c *client, filters map[string]string, quiet bool, tmpl string) error {
	resp, err := c.control().ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: filters})
	if err != nil {
		return err
	}
	if quiet {
		for _, t := range resp.Tasks {
			fmt.Fprintln(cmd.OutOrStdout(), t.Id)
		}
		return nil
	}
	nodes := map[string]string{}
	if nl, err := c.control().ListNodes(ctx, &shoalpb.ListNodesRequest{}); err == nil {
		for _, v := range nl.Nodes {
			nodes[v.Node.Id] = v.Node.GetStatus().GetAddr()
		}
	}
	return format.Rows(cmd.OutOrStdout(), tmpl, taskTable, taskRows(resp.Tasks, nodes, time.Now()))
}

// taskFilters turns --filter KEY=VALUE flags into a request filter map.
func taskFilters(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range list {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--filter %q: use KEY=VALUE, e.g. --filter desired-state=running", f)
		}
		out[k] = v
	}
	return out, nil
}

func newServicePsCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [--filter desired-state=running] SERVICE [SERVICE...]",
		Short: "List the tasks of services, history included",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := taskFilters(filters)
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				for _, ref := range args {
					f["service"] = ref
					if quiet || tmpl != "" {
						if err := printTasks(ctx, cmd, c, f, quiet, tmpl); err != nil {
							return err
						}
						continue
					}
					svc, err := c.control().GetService(ctx, &shoalpb.GetServiceRequest{Service: ref})
					if err != nil {
						return err
					}
					if svc.GetUpdateStatus() != nil {
						p, err := poll(c, svc.Id, followNone)
						if err != nil {
							return err
						}
						if p.update != "" {
							fmt.Fprintln(cmd.OutOrStdout(), p.update)
						}
					}
					if err := printTasks(ctx, cmd, c, f, quiet, tmpl); err != nil {
						return err
					}
					problems, err := portProblemsOf(ctx, c, svc)
					if err != nil {
						return err
					}
					printPortProblems(cmd.OutOrStdout(), problems)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print task IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "KEY=VALUE with KEY one of node, desired-state, id")
	return cmd
}

func newNodePsCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [NODE...]",
		Short: "List the tasks on nodes (default: self)",
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := taskFilters(filters)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				args = []string{"self"}
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				for _, ref := range args {
					f["node"] = ref
					if err := printTasks(ctx, cmd, c, f, quiet, tmpl); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print task IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "KEY=VALUE with KEY one of service, desired-state, id")
	return cmd
}

// isTerminal reports whether f is a terminal (progress is redrawn in place).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
