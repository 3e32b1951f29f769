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
		newServiceCmd(g), newEventsCmd(g), newClusterCmd(g), newTaskShimCmd(),
	)
	return root
}
