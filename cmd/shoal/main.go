// Command shoal is the shoal daemon and CLI. This file and its siblings only
// parse flags and call packages; behaviour lives in node/, manager/ and friends.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "shoal",
		Short:         "A small, fast container orchestrator",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().StringVarP(&g.host, "host", "H", "", "daemon to talk to: unix:///path/shoal.sock or MANAGER_IP:PORT (env SHOAL_HOST; default unix://"+defaultDataDir+"/shoal.sock)")
	root.PersistentFlags().StringVar(&g.certDir, "tls-dir", "", "directory with ca.pem, cert.pem and key.pem for a remote -H (env SHOAL_CERT_PATH; default ~/.shoal)")
	root.AddCommand(
		newInitCmd(), newJoinCmd(), newDaemonCmd(),
		newInfoCmd(g), newLeaveCmd(g), newNodeCmd(g), newJoinTokenCmd(g), newCertCmd(g),
		newServiceCmd(g), newStackCmd(g), newEventsCmd(g), newClusterCmd(g), newTaskShimCmd(), newTaskLoggerCmd(),
		newImageCmd(g), newVolumeCmd(g), newNetworkCmd(g), newDNSCmd(g), newCleanupCmd(),
	)
	showUsageOnBadArgs(root)
	return root
}

// showUsageOnBadArgs makes the argument checks of cmd and its subcommands
// end their errors with the command's usage line: cobra's own say only how
// many arguments were wanted ("requires at least 1 arg(s), only received
// 0"), not which, and usage is silenced for every other error.
func showUsageOnBadArgs(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return fmt.Errorf("%w; usage: %s", err, cmd.UseLine())
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		showUsageOnBadArgs(sub)
	}
}
