package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"shoal/manager/ca"
	shoalpb "shoal/proto"
)

func newJoinTokenCmd(g *globals) *cobra.Command {
	var rotate, quiet bool
	cmd := &cobra.Command{
		Use:       "join-token [--rotate] [-q] worker|manager",
		Short:     "Show or rotate a join token",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"worker", "manager"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var role shoalpb.NodeRole
			switch args[0] {
			case "worker":
				role = shoalpb.NodeRole_NODE_ROLE_WORKER
			case "manager":
				role = shoalpb.NodeRole_NODE_ROLE_MANAGER
			default:
				return fmt.Errorf("role %q: use 'worker' or 'manager'", args[0])
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				var tokens *shoalpb.JoinTokens
				var err error
				if rotate {
					tokens, err = c.control().RotateJoinToken(ctx, &shoalpb.RotateJoinTokenRequest{Role: role})
				} else {
					tokens, err = c.control().GetJoinTokens(ctx, &shoalpb.GetJoinTokensRequest{})
				}
				if err != nil {
					return err
				}
				token := tokens.Worker
				if role == shoalpb.NodeRole_NODE_ROLE_MANAGER {
					token = tokens.Manager
				}
				out := cmd.OutOrStdout()
				if quiet {
					fmt.Fprintln(out, token)
					return nil
				}
				if rotate {
					fmt.Fprintf(out, "Rotated the %s join token; the old one no longer works.\n\n", args[0])
				}
				self, err := c.control().GetNode(ctx, &shoalpb.GetNodeRequest{Node: "self"})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "To add a %s to this cluster, run:\n\n    shoal join --token %s %s\n\n", args[0], token, self.Node.GetStatus().GetAddr())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the token; nodes already joined are not affected")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print the token")
	return cmd
}

func newCertCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Certificates for remote use of the API"}
	var name, out string
	client := &cobra.Command{
		Use:   "client [--name NAME] [--out DIR]",
		Short: "Issue a client certificate for -H MANAGER_IP:PORT (writes ca.pem, cert.pem, key.pem)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				out = filepath.Join(home, ".shoal")
			}
			keyPEM, csr, err := ca.NewKeyAndCSR()
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client) error {
				resp, err := c.control().IssueClientCertificate(ctx, &shoalpb.IssueClientCertificateRequest{Csr: csr, Name: name})
				if err != nil {
					return err
				}
				if err := os.MkdirAll(out, 0o700); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				files := []struct {
					name string
					data []byte
					mode os.FileMode
				}{{"ca.pem", resp.RootCaPem, 0o644}, {"cert.pem", resp.CertPem, 0o644}, {"key.pem", keyPEM, 0o600}}
				for _, f := range files {
					if err := os.WriteFile(filepath.Join(out, f.name), f.data, f.mode); err != nil {
						return fmt.Errorf("--out: %w", err)
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Wrote a client certificate for %q to %s.\nUse it with: shoal -H MANAGER_IP:2377 --tls-dir %s node ls\n", name, out, out)
				return nil
			})
		},
	}
	client.Flags().StringVar(&name, "name", "admin", "name recorded in the certificate")
	client.Flags().StringVar(&out, "out", "", "directory to write to (default ~/.shoal)")
	cmd.AddCommand(client)
	return cmd
}
