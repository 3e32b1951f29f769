package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	shoalpb "shoal/proto"
)

// portProblem is one ingress port of a service that one node's routing
// mesh cannot serve (NodeStatus.port_errors): clients that reach the port
// through that node are refused, the other nodes serve it.
type portProblem struct {
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
	Node     string `json:"node"` // hostname
	NodeID   string `json:"nodeId"`
	Addr     string `json:"addr"` // the node's IP
	Error    string `json:"error"`
}

func (p portProblem) String() string {
	return fmt.Sprintf("port %d/%s not served on node %s (%s): %s", p.Port, p.Protocol, p.Node, p.Addr, p.Error)
}

// servicePortProblems lists, for each ingress port of svc, the nodes that
// report they cannot serve it, sorted by port then node.
func servicePortProblems(svc *shoalpb.Service, nodes []*shoalpb.NodeView) []portProblem {
	type key struct {
		port  uint32
		proto string
	}
	ingress := map[key]bool{}
	for _, p := range svc.GetSpec().GetTask().GetPorts() {
		if p.GetMode() == shoalpb.PublishMode_PUBLISH_MODE_INGRESS && p.GetPublishedPort() != 0 {
			ingress[key{p.GetPublishedPort(), protocolOrTCP(p.GetProtocol())}] = true
		}
	}
	if len(ingress) == 0 {
		return nil
	}
	var out []portProblem
	for _, v := range nodes {
		n := v.GetNode()
		for _, pe := range n.GetStatus().GetPortErrors() {
			if !ingress[key{pe.GetPort(), protocolOrTCP(pe.GetProtocol())}] {
				continue
			}
			addr := n.GetStatus().GetAddr()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				addr = host
			}
			name := n.GetDescription().GetHostname()
			if name == "" {
				name = n.GetId()
			}
			out = append(out, portProblem{Port: pe.GetPort(), Protocol: protocolOrTCP(pe.GetProtocol()), Node: name,
				NodeID: n.GetId(), Addr: addr, Error: pe.GetError()})
		}
	}
	slices.SortFunc(out, func(a, b portProblem) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return strings.Compare(a.Node, b.Node)
	})
	return out
}

func protocolOrTCP(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

// portProblemsOf fetches the nodes and lists svc's port problems.
func portProblemsOf(ctx context.Context, c *client, svc *shoalpb.Service) ([]portProblem, error) {
	if !hasIngressPort(svc) {
		return nil, nil // no node list needed
	}
	nl, err := c.control().ListNodes(ctx, &shoalpb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	return servicePortProblems(svc, nl.GetNodes()), nil
}

func hasIngressPort(svc *shoalpb.Service) bool {
	for _, p := range svc.GetSpec().GetTask().GetPorts() {
		if p.GetMode() == shoalpb.PublishMode_PUBLISH_MODE_INGRESS {
			return true
		}
	}
	return false
}

// printPortProblems writes one line per problem (service ps).
func printPortProblems(w io.Writer, problems []portProblem) {
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
}

// warnPortProblems prints the service's port problems once the service has
// converged: the service runs and the other nodes serve the port, so they
// are warnings, not a failure of create or update.
func warnPortProblems(cmd *cobra.Command, c *client, serviceID string) {
	ctx, cancel := callCtx()
	defer cancel()
	svc, err := c.control().GetService(ctx, &shoalpb.GetServiceRequest{Service: serviceID})
	if err != nil {
		return
	}
	problems, err := portProblemsOf(ctx, c, svc)
	if err != nil {
		return
	}
	for _, p := range problems {
		fmt.Fprintf(cmd.OutOrStdout(), "warning: %s\n", p)
	}
}
