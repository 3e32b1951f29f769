package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"shoal/internal/format"
	"shoal/manager/controlapi"
	shoalpb "shoal/proto"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage the cluster's nodes (on a manager)"}
	cmd.AddCommand(newNodeLsCmd(g), newNodeInspectCmd(g), newNodeRoleCmd(g, "promote"), newNodeRoleCmd(g, "demote"),
		newNodeRmCmd(g), newNodeUpdateCmd(g), newNodePsCmd(g))
	return cmd
}

// nodeRow is one line of `node ls`; its field names are the --format names.
type nodeRow struct {
	ID            string
	Self          bool `header:"SELF"`
	Hostname      string
	Status        string
	Message       string
	Availability  string
	ManagerStatus string
	Role          string
	Address       string
	Version       string `header:"VERSION"`
	Labels        map[string]string
}

func toRow(v *shoalpb.NodeView, self string) nodeRow {
	n := v.Node
	return nodeRow{
		ID:            n.Id,
		Self:          n.Id == self,
		Hostname:      n.GetDescription().GetHostname(),
		Status:        controlapi.StateName(n.GetStatus().GetState()),
		Message:       n.GetStatus().GetMessage(),
		Availability:  controlapi.AvailabilityName(n.GetSpec().GetAvailability()),
		ManagerStatus: v.ManagerStatus,
		Role:          controlapi.RoleName(n.GetRole()),
		Address:       n.GetStatus().GetAddr(),
		Version:       n.GetDescription().GetVersion(),
		Labels:        n.GetSpec().GetLabels(),
	}
}

// selfID is the ID of the node serving the API, for the '*' in node ls.
func selfID(ctx context.Context, c *client) string {
	v, err := c.control().GetNode(ctx, &shoalpb.GetNodeRequest{Node: "self"})
	if err != nil {
		return ""
	}
	return v.Node.Id
}

func newNodeLsCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List nodes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &shoalpb.ListNodesRequest{Filters: map[string]string{}}
			for _, f := range filters {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					return fmt.Errorf("--filter %q: use KEY=VALUE, e.g. --filter role=manager", f)
				}
				req.Filters[k] = v
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				resp, err := c.control().ListNodes(ctx, req)
				if err != nil {
					return err
				}
				self := selfID(ctx, c)
				rows := make([]nodeRow, 0, len(resp.Nodes))
				for _, v := range resp.Nodes {
					r := toRow(v, self)
					if quiet {
						fmt.Fprintln(cmd.OutOrStdout(), r.ID)
						continue
					}
					if r.Self && tmpl == "" {
						r.ID += " *"
					}
					rows = append(rows, r)
				}
				if quiet {
					return nil
				}
				slices.SortStableFunc(rows, func(a, b nodeRow) int { return strings.Compare(a.Address, b.Address) })
				return format.Rows(cmd.OutOrStdout(), tmpl, `table {{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.Address}}\t{{.Version}}`, rows)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "KEY=VALUE with KEY one of role, id, name, availability, state")
	return cmd
}

func newNodeInspectCmd(g *globals) *cobra.Command {
	var tmpl string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "inspect [--pretty] NODE [NODE...]",
		Short: "Show nodes in detail (NODE: ID, ID prefix, hostname, address or self)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				var views []*shoalpb.NodeView
				for _, ref := range args {
					v, err := c.control().GetNode(ctx, &shoalpb.GetNodeRequest{Node: ref})
					if err != nil {
						return err
					}
					views = append(views, v)
				}
				out := cmd.OutOrStdout()
				switch {
				case pretty:
					for _, v := range views {
						printNodePretty(cmd, v)
					}
					return nil
				case tmpl != "" && tmpl != "json":
					for _, v := range views {
						if err := format.One(out, tmpl, v); err != nil {
							return err
						}
					}
					return nil
				}
				return printProtoArray(cmd, views)
			})
		},
	}
	cmd.Flags().StringVarP(&tmpl, "format", "f", "", "Go template over the node view ({{.Node.Spec.Labels}}), or json")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "human-readable output")
	return cmd
}

// printProtoArray prints messages as an indented JSON array, like docker inspect.
func printProtoArray[M proto.Message](cmd *cobra.Command, msgs []M) error {
	var buf bytes.Buffer
	buf.WriteString("[")
	for i, m := range msgs {
		if i > 0 {
			buf.WriteString(",")
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	buf.WriteString("]")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "    "); err != nil {
		return err
	}
	out.WriteString("\n")
	_, err := out.WriteTo(cmd.OutOrStdout())
	return err
}

func printNodePretty(cmd *cobra.Command, v *shoalpb.NodeView) {
	r := toRow(v, "")
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "ID:              %s\n", r.ID)
	fmt.Fprintf(out, "Hostname:        %s\n", r.Hostname)
	fmt.Fprintf(out, "Address:         %s\n", r.Address)
	fmt.Fprintf(out, "Role:            %s\n", r.Role)
	if want := v.Node.GetSpec().GetDesiredRole(); want != v.Node.GetRole() {
		fmt.Fprintf(out, "Desired role:    %s\n", controlapi.RoleName(want))
	}
	fmt.Fprintf(out, "Status:          %s\n", r.Status)
	if r.Message != "" {
		fmt.Fprintf(out, "  Message:       %s\n", r.Message)
	}
	fmt.Fprintf(out, "Availability:    %s\n", r.Availability)
	if at := v.Node.GetDrainStartedAt(); at != nil && v.Node.GetSpec().GetAvailability() == shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN {
		fmt.Fprintf(out, "  Drain started: %s\n", ago(time.Since(at.AsTime())))
	}
	if d := v.Node.GetSpec().GetDrainDeadlineMs(); d > 0 {
		fmt.Fprintf(out, "  Drain deadline: %s\n", time.Duration(d)*time.Millisecond)
	}
	if pes := v.Node.GetStatus().GetPortErrors(); len(pes) > 0 {
		fmt.Fprintln(out, "Ports not served:")
		for _, pe := range pes {
			fmt.Fprintf(out, "  - %d/%s: %s\n", pe.GetPort(), protocolOrTCP(pe.GetProtocol()), pe.GetError())
		}
	}
	if r.ManagerStatus != "" {
		fmt.Fprintf(out, "Manager status:  %s\n", r.ManagerStatus)
		fmt.Fprintf(out, "  Raft address:  %s\n", v.Node.GetManager().GetRaftAddr())
	}
	if len(r.Labels) > 0 {
		keys := make([]string, 0, len(r.Labels))
		for k := range r.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(out, "Labels:")
		for _, k := range keys {
			fmt.Fprintf(out, "  - %s=%s\n", k, r.Labels[k])
		}
	}
	d := v.Node.GetDescription()
	fmt.Fprintf(out, "Platform:        %s/%s\n", d.GetOs(), d.GetArch())
	fmt.Fprintf(out, "Resources:       %d CPUs, %d MiB memory\n", d.GetNanoCpus()/1e9, d.GetMemoryBytes()>>20)
	fmt.Fprintf(out, "Runtime:         %s\n", d.GetRuntime())
	fmt.Fprintf(out, "Version:         %s\n", d.GetVersion())
}

func newNodeRoleCmd(g *globals, verb string) *cobra.Command {
	role, done := shoalpb.NodeRole_NODE_ROLE_MANAGER, "promoted to a manager"
	if verb == "demote" {
		role, done = shoalpb.NodeRole_NODE_ROLE_WORKER, "demoted to a worker"
	}
	return &cobra.Command{
		Use:   verb + " NODE [NODE...]",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " nodes (the role changes within seconds; watch 'shoal node ls')",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				for _, ref := range args {
					v, err := c.control().UpdateNode(ctx, &shoalpb.UpdateNodeRequest{Node: ref, DesiredRole: role})
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "Node %s %s in the cluster.\n", v.Node.Id, done)
				}
				return nil
			})
		},
	}
}

func newNodeRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [--force] NODE [NODE...]",
		Aliases: []string{"remove"},
		Short:   "Remove nodes from the cluster (their certificates stop working)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				for _, ref := range args {
					if _, err := c.control().RemoveNode(ctx, &shoalpb.RemoveNodeRequest{Node: ref, Force: force}); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), ref)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove a node that is still ready")
	return cmd
}

// nodeUpdateFlags are the flags of `node update`.
type nodeUpdateFlags struct {
	availability      string
	drainDeadline     time.Duration
	labelAdd, labelRm []string
}

// request is the UpdateNodeRequest the flags given (changed) ask for.
func (f *nodeUpdateFlags) request(node string, changed func(string) bool) (*shoalpb.UpdateNodeRequest, error) {
	req := &shoalpb.UpdateNodeRequest{Node: node, LabelAdd: map[string]string{}, LabelRm: f.labelRm}
	if changed("availability") {
		a, err := controlapi.ParseAvailability(f.availability)
		if err != nil {
			return nil, err
		}
		req.HasAvailability, req.Availability = true, a
	}
	if changed("drain-deadline") {
		req.HasDrainDeadline, req.DrainDeadlineMs = true, f.drainDeadline.Milliseconds()
	}
	for _, kv := range f.labelAdd {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("--label-add %q: use KEY=VALUE (or KEY alone for an empty value)", kv)
		}
		req.LabelAdd[k] = v
	}
	if !req.HasAvailability && !req.HasDrainDeadline && len(req.LabelAdd) == 0 && len(req.LabelRm) == 0 {
		return nil, fmt.Errorf("nothing to update: give --availability, --drain-deadline, --label-add or --label-rm")
	}
	return req, nil
}

func newNodeUpdateCmd(g *globals) *cobra.Command {
	f := &nodeUpdateFlags{}
	cmd := &cobra.Command{
		Use:   "update [--availability active|pause|drain] [--drain-deadline D] [--label-add K=V] [--label-rm K] NODE",
		Short: "Change a node's availability, drain deadline or labels",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(args[0], cmd.Flags().Changed)
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				v, err := c.control().UpdateNode(ctx, req)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), v.Node.Id)
				return nil
			})
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func (f *nodeUpdateFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.availability, "availability", "", "active, pause or drain")
	fs.DurationVar(&f.drainDeadline, "drain-deadline", 0, "while the node drains, stop the tasks still on it this long after the drain started, without waiting for their replacements (0: no deadline)")
	fs.StringArrayVar(&f.labelAdd, "label-add", nil, "add or change a label K=V")
	fs.StringArrayVar(&f.labelRm, "label-rm", nil, "remove a label")
}
