package controlapi

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// NodeDialer opens the log service of a node (at its advertised address).
type NodeDialer interface {
	TaskLogs(addr string) (shoalpb.TaskLogsClient, error)
}

// ServiceLogs merges the logs of a service's tasks from every node that ran
// them. A node that cannot be read is reported in-line and the rest goes on.
func (s *Server) ServiceLogs(req *shoalpb.ServiceLogsRequest, stream grpc.ServerStreamingServer[shoalpb.ServiceLogMessage]) error {
	ctx := stream.Context()
	type nodeTasks struct {
		node  *shoalpb.Node
		tasks []string
	}
	var byNode map[string]*nodeTasks
	var err error
	s.cfg.Store.View(func(tx state.ReadTx) {
		var svc *shoalpb.Service
		if svc, err = resolveService(tx, req.GetService()); err != nil {
			return
		}
		byNode = map[string]*nodeTasks{}
		for _, t := range tx.TasksByService(svc.Id) {
			if t.NodeId == "" {
				continue
			}
			nt := byNode[t.NodeId]
			if nt == nil {
				nt = &nodeTasks{node: tx.Node(t.NodeId)}
				byNode[t.NodeId] = nt
			}
			nt.tasks = append(nt.tasks, t.Id)
		}
	})
	if err != nil {
		return err
	}
	nodeIDs := make([]string, 0, len(byNode))
	for id := range byNode {
		nodeIDs = append(nodeIDs, id)
	}
	sort.Strings(nodeIDs)

	out := make(chan *shoalpb.ServiceLogMessage, 256)
	var wg sync.WaitGroup
	for _, id := range nodeIDs {
		nt := byNode[id]
		if nt.node == nil || nt.node.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_DOWN {
			addr := nt.node.GetStatus().GetAddr()
			if err := stream.Send(&shoalpb.ServiceLogMessage{Error: fmt.Sprintf("node %s (%s) is down: the logs of %d task(s) there cannot be read", id, addr, len(nt.tasks))}); err != nil {
				return err
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.readNodeLogs(ctx, nt.node, nt.tasks, req, out)
		}()
	}
	go func() { wg.Wait(); close(out) }()
	for msg := range out {
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) readNodeLogs(ctx context.Context, node *shoalpb.Node, tasks []string, req *shoalpb.ServiceLogsRequest, out chan<- *shoalpb.ServiceLogMessage) {
	fail := func(err error) {
		msg := &shoalpb.ServiceLogMessage{Error: fmt.Sprintf("node %s (%s) could not be read: %s", node.Id, node.GetStatus().GetAddr(), status.Convert(err).Message())}
		select {
		case out <- msg:
		case <-ctx.Done():
		}
	}
	if s.cfg.Nodes == nil {
		fail(fmt.Errorf("this manager cannot reach nodes"))
		return
	}
	client, err := s.cfg.Nodes.TaskLogs(node.GetStatus().GetAddr())
	if err != nil {
		fail(err)
		return
	}
	logs, err := client.Read(ctx, &shoalpb.TaskLogsRequest{TaskIds: tasks, Follow: req.GetFollow(), Tail: req.GetTail(), Since: req.GetSince()})
	if err != nil {
		fail(err)
		return
	}
	for {
		m, err := logs.Recv()
		if err != nil {
			if ctx.Err() == nil && !isEOF(err) {
				fail(err)
			}
			return
		}
		select {
		case out <- &shoalpb.ServiceLogMessage{Log: m}:
		case <-ctx.Done():
			return
		}
	}
}
