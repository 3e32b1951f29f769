package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"sort"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// serviceInspect is what `service inspect` shows of one service: the stored
// service (its fields are the template's: {{.Spec.Name}}) and what the
// cluster does with it now.
type serviceInspect struct {
	*shoalpb.Service
	// EndpointMode is "vip" or "dnsrr".
	EndpointMode string
	// Ports are the published and declared ports as `service ls` shows them.
	Ports string
	// Endpoints are the tasks that receive traffic now, by task name.
	Endpoints []serviceEndpoint
	// PortErrors are the nodes that cannot serve an ingress port.
	PortErrors []portProblem
}

// serviceEndpoint is one task that is an endpoint of its service: desired
// and actually RUNNING, ready, with an address (the dispatcher's rule, see
// docs/networking.md).
type serviceEndpoint struct {
	Task      string            `json:"task"`
	Node      string            `json:"node"`
	NodeID    string            `json:"nodeId"`
	Addresses []endpointAddress `json:"addresses"`
}

// endpointAddress is an endpoint's address on one network.
type endpointAddress struct {
	Network string `json:"network"`
	Address string `json:"address"`
}

// inspectServices gathers what `service inspect` prints of each service.
// problems[i] are list[i]'s port problems.
func inspectServices(ctx context.Context, c *client, list []*shoalpb.Service, problems [][]portProblem) ([]serviceInspect, error) {
	nets, err := c.control().ListNetworks(ctx, &shoalpb.ListNetworksRequest{})
	if err != nil {
		return nil, err
	}
	netNames := map[string]string{}
	for _, v := range nets.GetNetworks() {
		netNames[v.GetNetwork().GetId()] = v.GetNetwork().GetSpec().GetName()
	}
	nodes, err := c.control().ListNodes(ctx, &shoalpb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	hosts := map[string]string{}
	for _, v := range nodes.GetNodes() {
		hosts[v.GetNode().GetId()] = v.GetNode().GetDescription().GetHostname()
	}
	out := make([]serviceInspect, 0, len(list))
	for i, svc := range list {
		tasks, err := c.control().ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": svc.GetId(), "desired-state": "running"}})
		if err != nil {
			return nil, err
		}
		mode := "vip"
		if svc.GetSpec().GetEndpoint().GetMode() == shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR {
			mode = "dnsrr"
		}
		out = append(out, serviceInspect{
			Service:      svc,
			EndpointMode: mode,
			Ports:        portsText(svc.GetSpec().GetTask().GetPorts()),
			Endpoints:    endpointsOf(tasks.GetTasks(), netNames, hosts),
			PortErrors:   problems[i],
		})
	}
	return out, nil
}

// endpointsOf lists the tasks that are endpoints, by task name, with
// network names for IDs and hostnames for node IDs.
func endpointsOf(tasks []*shoalpb.Task, netNames, hosts map[string]string) []serviceEndpoint {
	eps := []serviceEndpoint{}
	for _, t := range tasks {
		st := t.GetStatus()
		if t.GetDesiredState() != shoalpb.TaskState_TASK_STATE_RUNNING || st.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING ||
			!st.GetReady() || t.GetAddress() == "" || t.GetNodeId() == "" {
			continue
		}
		ep := serviceEndpoint{Task: servicespec.TaskName(t), Node: hosts[t.GetNodeId()], NodeID: t.GetNodeId()}
		for _, n := range t.GetNetworks() {
			ep.Addresses = append(ep.Addresses, endpointAddress{Network: nameOr(netNames, n.GetNetworkId()), Address: addrOnly(n.GetAddress())})
		}
		if len(ep.Addresses) == 0 { // placed before networks existed
			ep.Addresses = []endpointAddress{{Network: nameOr(netNames, "default"), Address: addrOnly(t.GetAddress())}}
		}
		eps = append(eps, ep)
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Task < eps[j].Task })
	return eps
}

func nameOr(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}

// addrOnly drops the prefix length of a task address ("10.200.3.5/24").
func addrOnly(a string) string {
	if p, err := netip.ParsePrefix(a); err == nil {
		return p.Addr().String()
	}
	return a
}

// printInspectJSON prints each service as its protobuf JSON plus the
// fields serviceInspect adds (portErrors only when there are some), as one
// indented array. The keys come out sorted.
func printInspectJSON(cmd *cobra.Command, list []serviceInspect) error {
	objs := make([]map[string]json.RawMessage, 0, len(list))
	for _, s := range list {
		b, err := protojson.Marshal(s.Service)
		if err != nil {
			return err
		}
		obj := map[string]json.RawMessage{}
		if err := json.Unmarshal(b, &obj); err != nil {
			return err
		}
		extra := map[string]any{"endpointMode": s.EndpointMode, "ports": s.Ports, "endpoints": s.Endpoints}
		if len(s.PortErrors) > 0 {
			extra["portErrors"] = s.PortErrors
		}
		for k, v := range extra {
			if obj[k], err = json.Marshal(v); err != nil {
				return err
			}
		}
		objs = append(objs, obj)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "    ")
	if err := enc.Encode(objs); err != nil {
		return err
	}
	_, err := buf.WriteTo(cmd.OutOrStdout())
	return err
}
