package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"shoal/node"
)

// newCleanupCmd removes what a stopped node's containerd runtime left on
// the machine. Tasks outlive their daemon by design; this is how a node that
// is gone for good (or a test) takes them down. Hidden: `shoal leave` does it
// for users.
func newCleanupCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:    "cleanup --data-dir DIR",
		Short:  "Remove every container, snapshot, mount, task namespace and rule of a stopped node",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return node.Purge(ctx, dataDir)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the stopped node's data dir")
	return cmd
}
