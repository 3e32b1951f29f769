package main

import (
	"github.com/spf13/cobra"

	"shoal/worker/runtime/process"
)

// newTaskShimCmd is the shim the process runtime starts for every task; it
// is not for users, hence hidden.
func newTaskShimCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "task-shim --dir DIR -- COMMAND [ARG...]",
		Short:  "Run one task's process for the process runtime (internal)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return process.RunShim(dir, args)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the task's directory, with config.json from the runtime")
	_ = cmd.MarkFlagRequired("dir")
	// Everything after the command is the command's, even what looks like a flag.
	cmd.Flags().SetInterspersed(false)
	return cmd
}
