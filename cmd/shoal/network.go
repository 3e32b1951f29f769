package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"shoal/internal/format"
	shoalpb "shoal/proto"
)

func newNetworkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage the cluster's networks (on a manager)"}
	cmd.AddCommand(newNetworkCreateCmd(g), newNetworkLsCmd(g), newNetworkInspectCmd(g), newNetworkRmCmd(g))
	return cmd
}

func newNetworkCreateCmd(g *globals) *cobra.Command {
	var subnet string
	var attachable bool
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [--subnet CIDR] [--attachable] [--label KEY=VALUE]... NAME",
		Short: "Create a network that services can join with --network NAME",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := &shoalpb.NetworkSpec{Name: args[0], Subnet: subnet, Attachable: attachable}
			var err error
			if spec.Labels, err = labelMap("--label", labels); err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				v, err := c.control().CreateNetwork(ctx, &shoalpb.CreateNetworkRequest{Spec: spec})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), v.GetNetwork().GetId())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&subnet, "subnet", "", "IPv4 CIDR of the network (default: the next free one of the cluster's network pool)")
	cmd.Flags().BoolVar(&attachable, "attachable", false, "accepted for compatibility with Docker; shoal has no standalone containers to attach")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "network label KEY=VALUE")
	return cmd
}

// networkRow is one line of `network ls`; its field names are the --format
// names.
type networkRow struct {
	ID       string
	Name     string
	Subnet   string
	Services string
}

func newNetworkLsCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks, the default one first, with the services on each",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				resp, err := c.control().ListNetworks(ctx, &shoalpb.ListNetworksRequest{})
				if err != nil {
					return err
				}
				rows := make([]networkRow, 0, len(resp.GetNetworks()))
				for _, v := range resp.GetNetworks() {
					n := v.GetNetwork()
					if quiet {
						fmt.Fprintln(cmd.OutOrStdout(), n.GetId())
						continue
					}
					rows = append(rows, networkRow{ID: n.GetId(), Name: n.GetSpec().GetName(), Subnet: n.GetSubnet(), Services: strings.Join(v.GetServices(), ",")})
				}
				if quiet {
					return nil
				}
				return format.Rows(cmd.OutOrStdout(), tmpl, `table {{.ID}}\t{{.Name}}\t{{.Subnet}}\t{{.Services}}`, rows)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	return cmd
}

func newNetworkInspectCmd(g *globals) *cobra.Command {
	var tmpl string
	cmd := &cobra.Command{
		Use:   "inspect [--format F] NETWORK [NETWORK...]",
		Short: "Show networks in detail (JSON), with the services on each",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				var list []*shoalpb.NetworkView
				for _, ref := range args {
					v, err := c.control().GetNetwork(ctx, &shoalpb.GetNetworkRequest{Network: ref})
					if err != nil {
						return err
					}
					list = append(list, v)
				}
				if tmpl != "" && tmpl != "json" {
					for _, v := range list {
						if err := format.One(cmd.OutOrStdout(), tmpl, v); err != nil {
							return err
						}
					}
					return nil
				}
				return printProtoArray(cmd, list)
			})
		},
	}
	cmd.Flags().StringVarP(&tmpl, "format", "f", "", "Go template over the network ({{.Network.Subnet}}), or json")
	return cmd
}

func newNetworkRmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove networks that no service uses",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c *client) error {
				// Like docker, one network that cannot go does not keep
				// the others: each is tried and every failure reported.
				var errs []error
				for _, ref := range args {
					if _, err := c.control().RemoveNetwork(ctx, &shoalpb.RemoveNetworkRequest{Network: ref}); err != nil {
						errs = append(errs, c.explain(err))
						continue
					}
					fmt.Fprintln(cmd.OutOrStdout(), ref)
				}
				return errors.Join(errs...)
			})
		},
	}
	return cmd
}
