package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
	"github.com/spf13/cobra"

	"shoal/internal/format"
	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
	"shoal/stack"
)

func newStackCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "stack", Short: "Deploy and manage applications described in compose files (on a manager)"}
	cmd.AddCommand(newStackDeployCmd(g), newStackLsCmd(g), newStackPsCmd(g), newStackServicesCmd(g), newStackRmCmd(g), newStackConfigCmd())
	return cmd
}

// loadStack reads the compose files of a stack the way every stack command
// does: interpolated from the environment and the .env beside the first file.
func loadStack(ctx context.Context, files []string, name string) (*types.Project, error) {
	if len(files) == 0 {
		return nil, errors.New("-c/--compose-file: give at least one compose file")
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return stack.Load(ctx, stack.LoadOptions{Files: files, Env: env, Name: name})
}

func newStackDeployCmd(g *globals) *cobra.Command {
	var files []string
	var prune bool
	var resolve string
	w := &waitFlags{}
	cmd := &cobra.Command{
		Use:     "deploy -c FILE [-c FILE...] [--prune] [--detach] STACK",
		Aliases: []string{"up"},
		Short:   "Deploy a stack, or update it: only the services whose spec changed roll",
		Long: `Deploy a stack from compose files (merged in order, interpolated from the
environment and the .env file beside the first one). Services are named
STACK_SERVICE and reach each other by their short names; networks are created
as STACK_NETWORK, volumes are STACK_VOLUME. The whole stack is written at once:
a deploy that is refused changes nothing. depends_on orders the first start of
services, and condition: service_healthy waits for the dependency's health.
On a terminal the command then waits until every service has converged, and
fails if any update was paused or rolled back; --detach returns at once (the
default when stdout is not a terminal), --detach=false waits anyway.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := stack.ValidateName(name); err != nil {
				return err
			}
			switch resolve {
			case "always", "changed", "never":
			default:
				return fmt.Errorf("--resolve-image %q: use always, changed or never", resolve)
			}
			if !cmd.Flags().Changed("detach") {
				w.detach = !isTerminal(os.Stdout)
			}
			ctx := cmd.Context()
			project, err := loadStack(ctx, files, name)
			if err != nil {
				return err
			}
			req, warnings, err := stack.Convert(project, name)
			if err != nil {
				return err
			}
			for _, warning := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "Warning: "+warning)
			}
			req.Prune = prune
			return g.withClient(func(ctx context.Context, c *client) error {
				if resolve != "never" {
					if err := resolveImages(ctx, cmd.ErrOrStderr(), c, req.Services, resolve == "changed"); err != nil {
						return err
					}
				}
				resp, err := c.control().DeployStack(ctx, req)
				if err != nil {
					return err
				}
				follows, err := printChanges(ctx, cmd.OutOrStdout(), c, resp.GetChanges())
				if err != nil || w.detach {
					return err
				}
				return waitStack(cmd, c, name, follows, w.timeout)
			})
		},
	}
	cmd.Flags().StringArrayVarP(&files, "compose-file", "c", nil, "compose file; repeat to merge several, later ones override")
	cmd.Flags().BoolVar(&prune, "prune", false, "remove the stack's services and networks that are no longer in the files")
	cmd.Flags().StringVar(&resolve, "resolve-image", "always", "pin each service's image to the digest the cluster's nodes hold under its name: always, changed (only images whose name changed) or never (as written)")
	w.register(cmd)
	return cmd
}

// printChanges says what a deploy did, one line per created, updated or
// removed object and one for the unchanged ones, and returns what waiting
// follows for each service.
func printChanges(ctx context.Context, out io.Writer, c *client, changes []*shoalpb.StackChange) (map[string]follow, error) {
	follows := map[string]follow{}
	var unchanged []string
	for _, ch := range changes {
		switch ch.GetAction() {
		case shoalpb.StackAction_STACK_ACTION_CREATED:
			fmt.Fprintf(out, "Creating %s %s\n", ch.GetKind(), ch.GetName())
		case shoalpb.StackAction_STACK_ACTION_UPDATED:
			fmt.Fprintf(out, "Updating %s %s\n", ch.GetKind(), ch.GetName())
			svc, err := c.control().GetService(ctx, &shoalpb.GetServiceRequest{Service: ch.GetId()})
			if err != nil {
				return nil, err
			}
			follows[ch.GetId()] = followOf(svc)
		case shoalpb.StackAction_STACK_ACTION_REMOVED:
			fmt.Fprintf(out, "Removing %s %s\n", ch.GetKind(), ch.GetName())
		default:
			unchanged = append(unchanged, ch.GetName())
		}
	}
	if len(unchanged) > 0 {
		fmt.Fprintf(out, "Unchanged: %s\n", strings.Join(unchanged, ", "))
	}
	return follows, nil
}

// resolveImages pins each service's image to the digest the cluster holds
// under its name ("words-web:v1@sha256:…"), as Docker pins to the
// registry's: a redeploy after a new `image load` of the same tag then
// rolls the service, and every node runs the same version (a node holding
// another one fetches it from the cluster). With onlyChanged, a service
// whose image name is the deployed one keeps the deployed (pinned) image.
// It warns about an image no node holds (nodes will pull it from its
// registry; it stays unpinned) and one that nodes hold in several versions
// (pinned to the version of the manager asked, when it has one).
func resolveImages(ctx context.Context, warn io.Writer, c *client, specs []*shoalpb.ServiceSpec, onlyChanged bool) error {
	images := shoalpb.NewImagesClient(c.conn)
	all, err := images.List(ctx, &shoalpb.ListImagesRequest{AllNodes: true})
	if err != nil {
		return explainImages(c, err)
	}
	for _, e := range all.GetErrors() {
		fmt.Fprintf(warn, "Warning: images of %s could not be checked\n", e)
	}
	local, err := images.List(ctx, &shoalpb.ListImagesRequest{})
	if err != nil {
		return explainImages(c, err)
	}
	held := map[string]map[string][]string{} // name → digest → nodes
	for _, img := range all.GetImages() {
		if held[img.GetName()] == nil {
			held[img.GetName()] = map[string][]string{}
		}
		held[img.GetName()][img.GetDigest()] = append(held[img.GetName()][img.GetDigest()], img.GetNodeId())
	}
	mine := map[string]string{} // name → digest on the manager asked
	for _, img := range local.GetImages() {
		mine[img.GetName()] = img.GetDigest()
	}
	for _, spec := range specs {
		container := spec.GetTask().GetContainer()
		named, err := reference.ParseNormalizedNamed(container.GetImage())
		if err != nil {
			return fmt.Errorf("service %s: image %q: %v", spec.GetName(), container.GetImage(), err)
		}
		if _, pinned := named.(reference.Canonical); pinned {
			continue
		}
		if onlyChanged {
			cur, err := c.control().GetService(ctx, &shoalpb.GetServiceRequest{Service: spec.GetName()})
			if err == nil && unpinned(cur.GetSpec().GetTask().GetContainer().GetImage()) == container.GetImage() {
				container.Image = cur.GetSpec().GetTask().GetContainer().GetImage()
				continue
			}
		}
		name := reference.TagNameOnly(named).String()
		versions := held[name]
		digest := ""
		switch {
		case len(versions) == 0:
			fmt.Fprintf(warn, "Warning: no node holds image %s (service %s); nodes will pull it from its registry, or load it with 'shoal image load -i FILE.tar'\n", container.GetImage(), spec.GetName())
			continue
		case len(versions) == 1:
			for d := range versions {
				digest = d
			}
		default:
			var list []string
			for d, nodes := range versions {
				sort.Strings(nodes)
				list = append(list, fmt.Sprintf("%s on %s", shortDigest(d), strings.Join(nodes, ", ")))
			}
			sort.Strings(list)
			digest = mine[name]
			which := "the manager asked has none of them: left unpinned"
			if digest != "" {
				which = "pinned to the manager's, " + shortDigest(digest)
			}
			fmt.Fprintf(warn, "Warning: nodes hold different images named %s (service %s): %s; %s\n", container.GetImage(), spec.GetName(), strings.Join(list, "; "), which)
		}
		if digest != "" {
			container.Image += "@" + digest
		}
	}
	return nil
}

// unpinned is image without its "@digest", if it has one: what the service
// and task tables show, as Docker's do (inspect shows the digest).
func unpinned(image string) string {
	name, _, _ := strings.Cut(image, "@")
	return name
}

// waitStack polls the stack's services until every one has converged (and
// finished the rollout it follows), drawing one line per service. It fails
// when a service cannot converge, when a followed rollout stopped short
// (paused, rolled back), or at the timeout.
func waitStack(cmd *cobra.Command, c *client, name string, follows map[string]follow, timeout time.Duration) error {
	out := cmd.OutOrStdout()
	screen := newScreen(out)
	deadline := time.Now().Add(timeout)
	for {
		rows, err := pollStack(c, name, follows)
		if err != nil {
			return err
		}
		text, pending, failed := judgeStack(rows)
		screen.show(text)
		switch {
		case len(failed) > 0 && len(pending) == 0:
			return fmt.Errorf("stack %s did not converge: %s", name, strings.Join(failed, "; "))
		case len(pending) == 0:
			fmt.Fprintf(out, "verify: stack %s converged\n", name)
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("stack %s did not converge within %s: %s still converging; it keeps trying ('shoal stack ps %s' shows the tasks)", name, timeout, strings.Join(append(pending, failed...), ", "), name)
		}
		time.Sleep(200 * time.Millisecond) // the poll interval of the display, not synchronisation
	}
}

// judgeStack draws one poll of a stack and sorts its services: pending are
// those still converging (with why, when known), failed those that cannot
// (a rollout paused or rolled back, a task that will not be restarted).
func judgeStack(rows []stackRow) (text string, pending, failed []string) {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s: %s\n", r.name, r.text())
		switch {
		case r.p.stopped != "":
			failed = append(failed, fmt.Sprintf("%s: %s", r.name, r.p.stopped))
		case r.p.failure != "":
			failed = append(failed, fmt.Sprintf("%s cannot converge: %s", r.name, r.p.failure))
		case !r.p.done && r.p.canary == "":
			name := r.name
			if r.waiting == "" && len(r.p.reasons) > 0 {
				name += " (" + strings.Join(r.p.reasons, "; ") + ")"
			}
			pending = append(pending, name)
		}
	}
	return b.String(), pending, failed
}

// stackRow is one service's line in waitStack.
type stackRow struct {
	name    string
	waiting string
	p       *progress
}

func (r stackRow) text() string {
	s := r.p.summary
	switch {
	case r.waiting != "":
		s += " — " + r.waiting
	case !r.p.done && len(r.p.reasons) > 0:
		s += " — " + r.p.reasons[len(r.p.reasons)-1]
	}
	if r.p.update != "" {
		s += "; " + r.p.update
	}
	return s
}

func pollStack(c *client, name string, follows map[string]follow) ([]stackRow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.control().ListServices(ctx, &shoalpb.ListServicesRequest{Filters: map[string]string{"label": servicespec.StackLabel + "=" + name}})
	if err != nil {
		return nil, err
	}
	tasks, err := c.control().ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"stack": name}})
	if err != nil {
		return nil, err
	}
	byService := map[string][]*shoalpb.Task{}
	for _, t := range tasks.GetTasks() {
		byService[t.GetServiceId()] = append(byService[t.GetServiceId()], t)
	}
	rows := make([]stackRow, 0, len(list.GetServices()))
	for _, v := range list.GetServices() {
		svc := v.GetService()
		rows = append(rows, stackRow{name: svc.GetSpec().GetName(), waiting: v.GetWaiting(), p: assess(v, byService[svc.GetId()], follows[svc.GetId()])})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	return rows, nil
}

// stackServices lists the services of one stack, or of every stack.
func stackServices(ctx context.Context, c *client, name string) ([]*shoalpb.ServiceView, error) {
	label := servicespec.StackLabel
	if name != "" {
		label += "=" + name
	}
	resp, err := c.control().ListServices(ctx, &shoalpb.ListServicesRequest{Filters: map[string]string{"label": label}})
	if err != nil {
		return nil, err
	}
	return resp.GetServices(), nil
}

func newStackLsCmd(g *globals) *cobra.Command {
	var tmpl string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List stacks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				views, err := stackServices(ctx, c, "")
				if err != nil {
					return err
				}
				count := map[string]int{}
				for _, v := range views {
					count[v.GetService().GetSpec().GetLabels()[servicespec.StackLabel]]++
				}
				type row struct {
					Name     string
					Services int
				}
				rows := make([]row, 0, len(count))
				for n, k := range count {
					rows = append(rows, row{n, k})
				}
				sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
				return format.Rows(cmd.OutOrStdout(), tmpl, `table {{.Name}}\t{{.Services}}`, rows)
			})
		},
	}
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	return cmd
}

func newStackServicesCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	cmd := &cobra.Command{
		Use:   "services STACK",
		Short: "List the services of a stack",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				views, err := stackServices(ctx, c, args[0])
				if err != nil {
					return err
				}
				if len(views) == 0 {
					return fmt.Errorf("no stack named %q; 'shoal stack ls' lists the stacks", args[0])
				}
				return printServices(cmd.OutOrStdout(), views, quiet, tmpl)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	return cmd
}

func newStackPsCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [--filter desired-state=running] STACK",
		Short: "List the tasks of a stack, history included",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := taskFilters(filters)
			if err != nil {
				return err
			}
			f["stack"] = args[0]
			return g.withClient(func(ctx context.Context, c *client) error {
				if views, err := stackServices(ctx, c, args[0]); err != nil {
					return err
				} else if len(views) == 0 {
					return fmt.Errorf("no stack named %q; 'shoal stack ls' lists the stacks", args[0])
				}
				return printTasks(ctx, cmd, c, f, quiet, tmpl)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print task IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "KEY=VALUE with KEY one of node, desired-state, id")
	return cmd
}

func newStackRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm STACK [STACK...]",
		Aliases: []string{"remove", "down"},
		Short:   "Remove stacks: their services and networks (named volumes stay)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				var errs []error
				for _, name := range args {
					resp, err := c.control().RemoveStack(ctx, &shoalpb.RemoveStackRequest{Stack: name})
					if err != nil {
						errs = append(errs, c.explain(err))
						continue
					}
					if _, err := printChanges(ctx, cmd.OutOrStdout(), c, resp.GetChanges()); err != nil {
						errs = append(errs, err)
					}
				}
				return errors.Join(errs...)
			})
		},
	}
}

func newStackConfigCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "config -c FILE [-c FILE...] [STACK]",
		Short: "Print the compose files merged and interpolated, as a deploy reads them",
		Long: `Print the compose files merged in order and interpolated from the
environment and the .env file, as 'shoal stack deploy' reads them. STACK names
the project (network and volume names); without it, the first file's
directory does, as in compose. It needs no cluster.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			} else if len(files) > 0 {
				abs, err := filepath.Abs(files[0])
				if err != nil {
					return err
				}
				name = loader.NormalizeProjectName(filepath.Base(filepath.Dir(abs)))
			}
			project, err := loadStack(cmd.Context(), files, name)
			if err != nil {
				return err
			}
			out, err := project.MarshalYAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringArrayVarP(&files, "compose-file", "c", nil, "compose file; repeat to merge several, later ones override")
	return cmd
}
