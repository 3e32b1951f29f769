package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalpb "shoal/proto"
)

func newDNSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dns", Short: "Debug the cluster's service DNS"}
	cmd.AddCommand(newDNSLookupCmd(g))
	return cmd
}

func newDNSLookupCmd(g *globals) *cobra.Command {
	req := &shoalpb.DNSLookupRequest{}
	var short bool
	cmd := &cobra.Command{
		Use:   "lookup [--node N] [--network NET] [--type T] [-q] NAME",
		Short: "Answer NAME as a node's DNS server would (default: this node's, as seen from the host)",
		Long: "Answer NAME as a node's DNS server would answer it. Without --network the answer is the host's\n" +
			"view (every network); with --network, that of a task on the network. NXDOMAIN is an answer,\n" +
			"not an error. --node (a node ID, ID prefix or hostname) is relayed by a manager to that node.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			return g.withClient(func(ctx context.Context, c *client) error {
				if req.Network != "" {
					id, err := networkID(ctx, c, req.Network)
					if err != nil {
						return err
					}
					req.Network = id
				}
				resp, err := shoalpb.NewNodeDNSClient(c.conn).Lookup(ctx, req)
				if status.Code(err) == codes.Unimplemented {
					return fmt.Errorf("the daemon at %s does not serve DNS lookups; upgrade it to this shoal version", c.host)
				}
				if err != nil {
					return err
				}
				printLookup(cmd.OutOrStdout(), resp, short)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&req.Node, "node", "", "node whose DNS answers: ID, ID prefix or hostname (default: the node asked)")
	cmd.Flags().StringVar(&req.Network, "network", "", "answer as a task on this network (name, ID or \"default\") would be answered (default: as the host, which sees every network)")
	cmd.Flags().StringVarP(&req.Type, "type", "t", "A", "query type: A, AAAA, SRV, PTR (NAME may be an IP address), TXT, ANY…")
	cmd.Flags().BoolVarP(&short, "short", "q", false, "print only the answers' data, one per line (like dig +short)")
	return cmd
}

// networkID resolves a --network name to its ID with the control API. A
// worker has none: its node then gets the reference as it is, which is
// right for an ID and for "default".
func networkID(ctx context.Context, c *client, ref string) (string, error) {
	v, err := c.control().GetNetwork(ctx, &shoalpb.GetNetworkRequest{Network: ref})
	if status.Code(err) == codes.Unimplemented {
		return ref, nil
	}
	if err != nil {
		return "", fmt.Errorf("--network %s: %w", ref, c.explain(err))
	}
	return v.GetNetwork().GetId(), nil
}

// printLookup prints resp like `dig +noall +answer` under a line naming the
// node and the rcode, or with short only the answers' data (`dig +short`).
func printLookup(w io.Writer, resp *shoalpb.DNSLookupResponse, short bool) {
	if !short {
		fmt.Fprintf(w, ";; node %s (%s) %s\n", resp.GetHostname(), resp.GetNodeId(), resp.GetRcode())
		if resp.GetForwarded() {
			fmt.Fprintln(w, ";; not a cluster name: answered by the node's upstream resolvers")
		}
	}
	for _, rr := range resp.GetAnswers() {
		if short {
			// name, TTL, class, type, then the data (which may hold tabs
			// or spaces of its own).
			if f := strings.SplitN(rr, "\t", 5); len(f) == 5 {
				rr = f[4]
			}
		}
		fmt.Fprintln(w, rr)
	}
}
