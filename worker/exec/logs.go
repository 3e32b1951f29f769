package exec

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
	"shoal/worker/runtime/tasklog"
)

// LogServer serves the TaskLogs service from the log files of the tasks the
// executor knows, finished ones included until they are forgotten.
type LogServer struct {
	shoalpb.UnimplementedTaskLogsServer
	e *Executor
}

// NewLogServer returns the TaskLogs server of e; register it with
// shoalpb.RegisterTaskLogsServer.
func NewLogServer(e *Executor) *LogServer { return &LogServer{e: e} }

// Read streams the logs of the requested tasks (all tasks of the node when
// none is named): the last tail lines of each (negative: all, 0: none), from
// since on, then, with follow, new lines as they are written until the
// client goes away or the task is forgotten. Lines of different tasks
// interleave; each task's are in order. Unknown task IDs are NotFound.
func (s *LogServer) Read(req *shoalpb.TaskLogsRequest, stream grpc.ServerStreamingServer[shoalpb.LogMessage]) error {
	ids := req.GetTaskIds()
	if len(ids) == 0 {
		ids = s.e.taskIDs()
		sort.Strings(ids)
	}
	tasks := make([]*shoalpb.Task, 0, len(ids))
	for _, id := range ids {
		t, ok := s.e.task(id)
		if !ok {
			return status.Errorf(codes.NotFound, "task %s is not on node %s", id, s.e.cfg.NodeID)
		}
		tasks = append(tasks, t)
	}
	opts := tasklog.ReadOptions{Tail: int(req.GetTail()), Follow: req.GetFollow()}
	if req.GetSince() != nil {
		opts.Since = req.GetSince().AsTime()
	}

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var (
		sendMu   sync.Mutex
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, t := range tasks {
		name := taskName(t, s.e.cfg.NodeID)
		o := opts
		o.Stop = func() bool { _, ok := s.e.task(t.Id); return !ok }
		wg.Go(func() {
			err := tasklog.Read(ctx, s.e.cfg.Runtime.LogPath(t.Id), o, func(e tasklog.Entry) error {
				msg := &shoalpb.LogMessage{
					TaskId:    t.Id,
					TaskName:  name,
					NodeId:    s.e.cfg.NodeID,
					Stream:    e.Stream,
					Timestamp: timestamppb.New(e.Time),
					Line:      e.Line,
				}
				sendMu.Lock()
				defer sendMu.Unlock()
				return stream.Send(msg)
			})
			if err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		})
	}
	wg.Wait()
	return firstErr
}

// taskName is how users see a task in logs: <service>.<slot>.<task-id>, or
// <service>.<node-id>.<task-id> for a global service's task (slot 0).
func taskName(t *shoalpb.Task, nodeID string) string {
	if t.Slot != 0 {
		return fmt.Sprintf("%s.%d.%s", t.ServiceName, t.Slot, t.Id)
	}
	if t.NodeId != "" {
		nodeID = t.NodeId
	}
	return fmt.Sprintf("%s.%s.%s", t.ServiceName, nodeID, t.Id)
}
