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
// With follow, tasks that start later (scale up, restarts, updates) are
// followed too, from their first line.
func (s *Server) ServiceLogs(req *shoalpb.ServiceLogsRequest, stream grpc.ServerStreamingServer[shoalpb.ServiceLogMessage]) error {
	ctx := stream.Context()
	var events <-chan state.Event
	if req.GetFollow() {
		// Subscribed before the read below, so no task starts unseen.
		events = s.cfg.Store.Watch(ctx)
	}
	var svc *shoalpb.Service
	byNode := map[string][]string{}
	nodes := map[string]*shoalpb.Node{}
	var err error
	s.cfg.Store.View(func(tx state.ReadTx) {
		if svc, err = resolveService(tx, req.GetService()); err != nil {
			return
		}
		for _, t := range tx.TasksByService(svc.Id) {
			if t.NodeId == "" {
				continue
			}
			byNode[t.NodeId] = append(byNode[t.NodeId], t.Id)
			nodes[t.NodeId] = tx.Node(t.NodeId)
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
	read := func(nodeID string, node *shoalpb.Node, tasks []string, tail int64) error {
		if node == nil || node.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_DOWN {
			addr := node.GetStatus().GetAddr()
			return stream.Send(&shoalpb.ServiceLogMessage{Error: fmt.Sprintf("node %s (%s) is down: the logs of %d task(s) there cannot be read", nodeID, addr, len(tasks))})
		}
		wg.Go(func() { s.readNodeLogs(ctx, node, tasks, tail, req, out) })
		return nil
	}
	following := map[string]bool{}
	for _, id := range nodeIDs {
		for _, t := range byNode[id] {
			following[t] = true
		}
		if err := read(id, nodes[id], byNode[id], req.GetTail()); err != nil {
			return err
		}
	}
	if !req.GetFollow() {
		go func() { wg.Wait(); close(out) }()
		for msg := range out {
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		return nil
	}
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-out:
			if err := stream.Send(msg); err != nil {
				return err
			}
		case ev, ok := <-events:
			if !ok {
				return stream.Send(&shoalpb.ServiceLogMessage{Error: "this manager fell behind the cluster's changes: tasks started from now on are not followed; run the command again"})
			}
			t, isTask := ev.Object.(*shoalpb.Task)
			if !isTask || t.ServiceId != svc.Id || following[t.Id] || t.NodeId == "" ||
				t.GetStatus().GetState() < shoalpb.TaskState_TASK_STATE_ACCEPTED {
				continue
			}
			// The node's agent has the task once it accepted it.
			following[t.Id] = true
			var node *shoalpb.Node
			s.cfg.Store.View(func(tx state.ReadTx) { node = tx.Node(t.NodeId) })
			if err := read(t.NodeId, node, []string{t.Id}, -1); err != nil {
				return err
			}
		}
	}
}

// readNodeLogs streams the logs of tasks on node into out (the last tail
// lines of each, all when negative) until they end or ctx does.
func (s *Server) readNodeLogs(ctx context.Context, node *shoalpb.Node, tasks []string, tail int64, req *shoalpb.ServiceLogsRequest, out chan<- *shoalpb.ServiceLogMessage) {
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
	logs, err := client.Read(ctx, &shoalpb.TaskLogsRequest{TaskIds: tasks, Follow: req.GetFollow(), Tail: tail, Since: req.GetSince()})
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
