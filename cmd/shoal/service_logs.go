package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

func newServiceLogsCmd(g *globals) *cobra.Command {
	var follow, timestamps bool
	var tail, since string
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] [--since T] [--timestamps] SERVICE",
		Short: "Show the logs of a service's tasks, from every node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &shoalpb.ServiceLogsRequest{Service: args[0], Follow: follow, Tail: -1}
			if tail != "all" {
				n, err := strconv.ParseInt(tail, 10, 64)
				if err != nil || n < 0 {
					return fmt.Errorf("--tail %q: give a number of lines or 'all'", tail)
				}
				req.Tail = n
			}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				req.Since = timestamppb.New(t)
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			stream, err := c.control().ServiceLogs(ctx, req)
			if err != nil {
				return c.explain(err)
			}
			var unreadable []string
			for {
				msg, err := stream.Recv()
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					break
				}
				if err != nil {
					return c.explain(err)
				}
				if msg.Error != "" {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", msg.Error)
					unreadable = append(unreadable, msg.Error)
					continue
				}
				l := msg.Log
				w := cmd.OutOrStdout()
				if l.Stream == "stderr" {
					w = cmd.ErrOrStderr()
				}
				prefix := l.TaskName + "@" + l.NodeId[:min(12, len(l.NodeId))] + "    | "
				if timestamps {
					prefix = l.Timestamp.AsTime().Format(time.RFC3339Nano) + " " + prefix
				}
				fmt.Fprintf(w, "%s%s\n", prefix, l.Line)
			}
			if len(unreadable) > 0 {
				return fmt.Errorf("the logs of %d node(s) could not be read (see the warnings above)", len(unreadable))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new lines")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "number of lines from the end of each task's log")
	cmd.Flags().StringVar(&since, "since", "", "only lines since a time (RFC 3339) or a duration ago (10m)")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	return cmd
}

// parseSince accepts an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: give an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (10m)", s)
}
