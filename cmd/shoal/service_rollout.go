package main

import (
	"context"

	"github.com/spf13/cobra"

	shoalpb "shoal/proto"
)

func newServiceRollbackCmd(g *globals) *cobra.Command {
	w := &waitFlags{}
	var toVersion uint64
	cmd := &cobra.Command{
		Use:   "rollback [--to-version N] [-d] [--timeout D] SERVICE",
		Short: "Return a service to its spec before the current one (or a kept one) and follow the rollback",
		Long: "Return a service to its spec before the current one, or with --to-version to one of its kept specs\n" +
			"('shoal service inspect' lists them under previousSpecs). Tasks roll back as the --rollback-* settings\n" +
			"of the spec left say; the command waits until the rollback is complete and the tasks converged.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c *client) error {
				svc, err := c.control().RollbackService(ctx, &shoalpb.RollbackServiceRequest{Service: args[0], ToVersion: toVersion})
				if err != nil {
					return c.explain(err)
				}
				return w.printAndWait(cmd, c, svc, svc.Spec.Name, followOf(svc))
			})
		},
	}
	cmd.Flags().Uint64Var(&toVersion, "to-version", 0, "the spec version to return to, one of the kept ones (default: the one before the current)")
	w.register(cmd)
	return cmd
}

func newServicePromoteCmd(g *globals) *cobra.Command {
	w := &waitFlags{}
	cmd := &cobra.Command{
		Use:   "promote [-d] [--timeout D] SERVICE",
		Short: "Let an update waiting on its canaries go on to the remaining tasks, and follow it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c *client) error {
				svc, err := c.control().PromoteService(ctx, &shoalpb.PromoteServiceRequest{Service: args[0]})
				if err != nil {
					return c.explain(err)
				}
				return w.printAndWait(cmd, c, svc, svc.Spec.Name, followUpdate)
			})
		},
	}
	w.register(cmd)
	return cmd
}
