package main

import (
	"testing"

	shoalpb "shoal/proto"
)

// Only the service's ingress ports are listed, with the node's name and IP.
func TestServicePortProblems(t *testing.T) {
	svc := &shoalpb.Service{Id: "s1", Spec: &shoalpb.ServiceSpec{Name: "web", Task: &shoalpb.TaskSpec{Ports: []*shoalpb.PortConfig{
		{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS},
		{Protocol: "tcp", TargetPort: 90, PublishedPort: 9090, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST},
	}}}}
	node := func(id, host, addr string, pes ...*shoalpb.PortError) *shoalpb.NodeView {
		return &shoalpb.NodeView{Node: &shoalpb.Node{Id: id, Description: &shoalpb.NodeDescription{Hostname: host},
			Status: &shoalpb.NodeStatus{Addr: addr, PortErrors: pes}}}
	}
	inUse := &shoalpb.PortError{Port: 8080, Protocol: "tcp", Error: "port 8080/tcp is already in use on this node"}
	nodes := []*shoalpb.NodeView{
		node("n2", "w2", "10.0.0.2:2377", inUse),
		node("n1", "w1", "10.0.0.1:2377"),
		node("n3", "w3", "10.0.0.3:2377", &shoalpb.PortError{Port: 9090, Protocol: "tcp", Error: "another service's port"}),
	}
	got := servicePortProblems(svc, nodes)
	if len(got) != 1 || got[0].String() != "port 8080/tcp not served on node w2 (10.0.0.2): port 8080/tcp is already in use on this node" {
		t.Fatalf("problems %v, want port 8080 on w2 only", got)
	}

}
