package main

import (
	"github.com/spf13/cobra"

	"shoal/worker/runtime/containerd"
)

// newTaskLoggerCmd is the log driver containerd's shims start for every
// container of the containerd runtime (binary:// log URI): it reads the
// container's stdout and stderr on fds 3 and 4 and writes the task's log.
// It is not for users, hence hidden.
func newTaskLoggerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "task-logger LOG-PATH",
		Short:  "Write one container's output to its task log (internal)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return containerd.RunTaskLogger(args[0])
		},
	}
}
