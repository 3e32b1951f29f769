package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"shoal/internal/format"
	"shoal/manager/controlapi"
	shoalpb "shoal/proto"
)

func newInfoCmd(g *globals) *cobra.Command {
	var tmpl string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show this node and its cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				info, err := c.local().Info(ctx, &shoalpb.InfoRequest{})
				if err != nil {
					return err
				}
				if tmpl != "" {
					return format.One(cmd.OutOrStdout(), tmpl, info)
				}
				printInfo(cmd, info)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&tmpl, "format", "f", "", "Go template or json")
	return cmd
}

func printInfo(cmd *cobra.Command, info *shoalpb.InfoResponse) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Node ID:        %s\n", info.NodeId)
	fmt.Fprintf(out, "Cluster ID:     %s\n", info.ClusterId)
	fmt.Fprintf(out, "Role:           %s\n", controlapi.RoleName(info.Role))
	fmt.Fprintf(out, "State:          %s\n", info.State)
	if info.Error != "" && info.State != "active" {
		fmt.Fprintf(out, "Last error:     %s\n", info.Error)
	}
	fmt.Fprintf(out, "Address:        %s\n", info.Addr)
	fmt.Fprintf(out, "Data dir:       %s\n", info.DataDir)
	fmt.Fprintf(out, "Runtime:        %s\n", info.Runtime)
	fmt.Fprintf(out, "Version:        %s\n", info.Version)
	fmt.Fprintf(out, "Certificate:    valid until %s\n", time.Unix(info.CertNotAfterUnix, 0).UTC().Format(time.RFC3339))
	if info.Role == shoalpb.NodeRole_NODE_ROLE_MANAGER {
		fmt.Fprintf(out, "Leader:         %s\n", orNone(info.LeaderId))
		fmt.Fprintf(out, "Managers:       %d (%d reachable)\n", info.ManagersTotal, info.ManagersReachable)
		fmt.Fprintf(out, "Nodes:          %d\n", info.NodesTotal)
		fmt.Fprintf(out, "Raft applied:   %d\n", info.RaftAppliedIndex)
	} else {
		for _, m := range info.Managers {
			fmt.Fprintf(out, "Manager:        %s (%s)\n", m.ApiAddr, m.NodeId)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func newLeaveCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "leave [--force]",
		Short: "Take this node out of the cluster, stop its daemon and clear its data dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(ctx context.Context, c *client) error {
				if _, err := c.local().Leave(ctx, &shoalpb.LeaveRequest{Force: force}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "Node left the cluster.")
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "leave even though this node is a manager")
	return cmd
}
