package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"shoal/internal/format"
	shoalpb "shoal/proto"
)

func newEventsCmd(g *globals) *cobra.Command {
	var filters []string
	var tmpl string
	cmd := &cobra.Command{
		Use:   "events [--filter type=service|node|task] [--filter service=S] [--filter node=N]",
		Short: "Stream node, service and task changes as they happen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := taskFilters(filters)
			if err != nil {
				return err
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			stream, err := c.control().Events(ctx, &shoalpb.EventsRequest{Filters: f})
			if err != nil {
				return c.explain(err)
			}
			for {
				e, err := stream.Recv()
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return c.explain(err)
				}
				if tmpl != "" {
					if err := format.One(cmd.OutOrStdout(), tmpl, e); err != nil {
						return err
					}
					continue
				}
				keys := make([]string, 0, len(e.Attributes))
				for k := range e.Attributes {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				attrs := make([]string, len(keys))
				for i, k := range keys {
					attrs[i] = k + "=" + e.Attributes[k]
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s %s (name=%s %s)\n", e.Time.AsTime().Format(time.RFC3339Nano), e.Type, e.Action, e.Id, e.Name, strings.Join(attrs, " "))
			}
		},
	}
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "KEY=VALUE with KEY one of type, service, node")
	cmd.Flags().StringVar(&tmpl, "format", "", "Go template per event, or json")
	return cmd
}

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster-wide settings"}
	var historyLimit int64
	update := &cobra.Command{
		Use:   "update --task-history-limit N",
		Short: "Change cluster-wide settings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("task-history-limit") {
				return fmt.Errorf("nothing to update: give --task-history-limit")
			}
			if historyLimit < 1 {
				return fmt.Errorf("--task-history-limit %d: keep at least 1 task per slot", historyLimit)
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				spec, err := c.control().UpdateClusterSpec(ctx, &shoalpb.UpdateClusterSpecRequest{TaskHistoryLimit: historyLimit})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "task history limit: %d\n", spec.TaskHistoryLimit)
				return nil
			})
		},
	}
	update.Flags().Int64Var(&historyLimit, "task-history-limit", 5, "old tasks kept per slot")
	cmd.AddCommand(update)
	return cmd
}
