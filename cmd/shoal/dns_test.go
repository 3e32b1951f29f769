package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/spf13/cobra"

	"shoal/internal/format"
	shoalpb "shoal/proto"
)

func TestPrintLookup(t *testing.T) {
	resp := &shoalpb.DNSLookupResponse{NodeId: "n1", Hostname: "h1", Rcode: "NOERROR", Answers: []string{
		"_http._tcp.web.\t1\tIN\tSRV\t0 1 80 web.1.a.",
		"web.\t1\tIN\tA\t10.0.0.2",
	}}
	var out bytes.Buffer
	printLookup(&out, resp, false)
	if want := ";; node h1 (n1) NOERROR\n_http._tcp.web.\t1\tIN\tSRV\t0 1 80 web.1.a.\nweb.\t1\tIN\tA\t10.0.0.2\n"; out.String() != want {
		t.Errorf("full:\n%q\nwant\n%q", out.String(), want)
	}
	out.Reset()
	printLookup(&out, resp, true)
	if want := "0 1 80 web.1.a.\n10.0.0.2\n"; out.String() != want {
		t.Errorf("short: %q, want %q", out.String(), want)
	}
	out.Reset()
	printLookup(&out, &shoalpb.DNSLookupResponse{NodeId: "n1", Hostname: "h1", Rcode: "NXDOMAIN", Forwarded: true}, false)
	if want := ";; node h1 (n1) NXDOMAIN\n;; not a cluster name: answered by the node's upstream resolvers\n"; out.String() != want {
		t.Errorf("forwarded NXDOMAIN: %q, want %q", out.String(), want)
	}
}

// Only tasks that are endpoints now are listed, by name, with network
// names and hostnames; inspect's JSON and templates both show them.
func TestServiceInspectEndpoints(t *testing.T) {
	running, ready := shoalpb.TaskState_TASK_STATE_RUNNING, true
	task := func(id string, slot uint64, desired shoalpb.TaskState, ready bool, addr string, nets ...*shoalpb.TaskNetwork) *shoalpb.Task {
		return &shoalpb.Task{Id: id, ServiceName: "web", Slot: slot, NodeId: "n1", DesiredState: desired,
			Status: &shoalpb.TaskStatus{State: running, Ready: ready}, Address: addr, Networks: nets}
	}
	tasks := []*shoalpb.Task{
		task("b", 2, running, ready, "10.200.1.6/24",
			&shoalpb.TaskNetwork{NetworkId: "default", Address: "10.200.1.6/24"}, &shoalpb.TaskNetwork{NetworkId: "x1", Address: "10.64.1.6/24"}),
		task("a", 1, running, ready, "10.200.1.5/24"),                               // placed before networks: the default network
		task("c", 3, running, false, "10.200.1.7/24"),                               // not ready
		task("d", 4, shoalpb.TaskState_TASK_STATE_SHUTDOWN, ready, "10.200.1.8/24"), // going
		task("e", 5, running, ready, ""),                                            // no address
	}
	eps := endpointsOf(tasks, map[string]string{"default": "default", "x1": "back"}, map[string]string{"n1": "host1"})
	if len(eps) != 2 || eps[0].Task != "web.1.a" || eps[1].Task != "web.2.b" || eps[0].Node != "host1" ||
		len(eps[0].Addresses) != 1 || eps[0].Addresses[0] != (endpointAddress{"default", "10.200.1.5"}) ||
		len(eps[1].Addresses) != 2 || eps[1].Addresses[1] != (endpointAddress{"back", "10.64.1.6"}) {
		t.Fatalf("endpoints = %+v", eps)
	}

	svc := &shoalpb.Service{Id: "s1", Spec: &shoalpb.ServiceSpec{Name: "web"}, Endpoint: &shoalpb.ServiceEndpoint{Vip: "10.201.0.2"}}
	full := []serviceInspect{{Service: svc, EndpointMode: "vip", Ports: "*:8080->80/tcp", Endpoints: eps}}
	var out bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&out)
	if err := printInspectJSON(cmd, full); err != nil {
		t.Fatal(err)
	}
	var decoded []struct {
		ID           string            `json:"id"`
		Endpoint     map[string]string `json:"endpoint"`
		EndpointMode string            `json:"endpointMode"`
		Ports        string            `json:"ports"`
		Endpoints    []serviceEndpoint `json:"endpoints"`
		PortErrors   []portProblem     `json:"portErrors"`
	}
	if err := json.Unmarshal(out.Bytes(), &decoded); err != nil {
		t.Fatalf("inspect output is not JSON: %v\n%s", err, out.String())
	}
	if len(decoded) != 1 || decoded[0].ID != "s1" || decoded[0].Endpoint["vip"] != "10.201.0.2" || decoded[0].EndpointMode != "vip" ||
		decoded[0].Ports != "*:8080->80/tcp" || len(decoded[0].Endpoints) != 2 || decoded[0].Endpoints[1].Addresses[1].Address != "10.64.1.6" ||
		decoded[0].PortErrors != nil {
		t.Fatalf("inspect output:\n%s", out.String())
	}

	out.Reset()
	if err := format.One(&out, `{{.Spec.Name}} {{.EndpointMode}} {{.Endpoint.Vip}}{{range .Endpoints}} {{.Task}}@{{.Node}}{{range .Addresses}} {{.Network}}={{.Address}}{{end}}{{end}}`, full[0]); err != nil {
		t.Fatal(err)
	}
	if want := "web vip 10.201.0.2 web.1.a@host1 default=10.200.1.5 web.2.b@host1 default=10.200.1.6 back=10.64.1.6\n"; out.String() != want {
		t.Errorf("template: %q, want %q", out.String(), want)
	}
}
