package dispatcher

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// assignQueue holds the task changes waiting to be sent to one node. The
// leader loop fills it from store events (routed by node, so one store watch
// serves every session); the node's Assignments stream drains it.
type assignQueue struct {
	notify chan struct{}

	// mu guards the fields below. It is the queue's own, so that the
	// router and the node's stream never wait for other sessions.
	mu       sync.Mutex
	updates  map[string]*shoalpb.Task
	removes  map[string]bool
	complete bool // the next message must be the complete set
}

func newAssignQueue() *assignQueue {
	return &assignQueue{notify: make(chan struct{}, 1), updates: map[string]*shoalpb.Task{}, removes: map[string]bool{}}
}

func (q *assignQueue) poke() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// assigned reports whether a task has been placed and so belongs to its node's
// assignments.
func assigned(t *shoalpb.Task) bool {
	return t.GetNodeId() != "" && t.GetStatus().GetState() >= shoalpb.TaskState_TASK_STATE_ASSIGNED
}

// routeTask queues a task event for the session of the task's node.
func (d *Dispatcher) routeTask(ev state.Event, t *shoalpb.Task) {
	if !assigned(t) {
		return
	}
	d.mu.RLock()
	sess := d.sessions[t.GetNodeId()]
	d.mu.RUnlock()
	if sess == nil {
		return
	}
	q := sess.assign
	q.mu.Lock()
	defer q.mu.Unlock()
	if ev.Kind == state.EventDelete {
		delete(q.updates, t.Id)
		q.removes[t.Id] = true
	} else {
		delete(q.removes, t.Id)
		q.updates[t.Id] = t
	}
	q.poke()
}

// requestComplete makes every session's next assignments message the complete
// set; used after a store reset or a missed event.
func (d *Dispatcher) requestComplete() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, s := range d.sessions {
		s.assign.requestComplete()
	}
}

// requestComplete makes the next message the complete set.
func (q *assignQueue) requestComplete() {
	q.mu.Lock()
	q.complete = true
	q.mu.Unlock()
	q.poke()
}

// Assignments streams the node's tasks: the complete set, then changes.
func (d *Dispatcher) Assignments(req *shoalpb.AssignmentsRequest, stream grpc.ServerStreamingServer[shoalpb.AssignmentsMessage]) error {
	sess, err := d.sessionFor(stream.Context(), req.GetSessionId())
	if err != nil {
		return err
	}
	sess.assign.requestComplete()
	// sent remembers the desired state last sent per task: status-only changes
	// (the node's own reports echoed back) are not sent again.
	sent := map[string]shoalpb.TaskState{}
	for {
		if msg := d.nextAssignments(sess, sent); msg != nil {
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-sess.closed:
			return status.Error(codes.Unavailable, "session closed by the dispatcher; reconnect")
		case <-sess.assign.notify:
		}
	}
}

// nextAssignments drains the session's queue into one message, nil if there
// is nothing to send.
func (d *Dispatcher) nextAssignments(sess *session, sent map[string]shoalpb.TaskState) *shoalpb.AssignmentsMessage {
	q := sess.assign
	q.mu.Lock()
	complete := q.complete
	updates, removes := q.updates, q.removes
	q.complete = false
	q.updates, q.removes = map[string]*shoalpb.Task{}, map[string]bool{}
	q.mu.Unlock()

	msg := &shoalpb.AssignmentsMessage{Complete: complete}
	if complete {
		// Events that arrive from now on are newer than this read, so
		// nothing queued after the drain above can be older than what is sent.
		clear(sent)
		d.cfg.Store.View(func(tx state.ReadTx) {
			for _, t := range tx.TasksByNode(sess.nodeID) {
				if assigned(t) {
					msg.Update = append(msg.Update, t)
					sent[t.Id] = t.DesiredState
				}
			}
		})
		return msg
	}
	for id, t := range updates {
		if prev, ok := sent[id]; ok && prev == t.DesiredState {
			continue
		}
		sent[id] = t.DesiredState
		msg.Update = append(msg.Update, t)
	}
	for id := range removes {
		delete(sent, id)
		msg.Remove = append(msg.Remove, id)
	}
	if len(msg.Update) == 0 && len(msg.Remove) == 0 {
		return nil
	}
	return msg
}

// sessionFor finds the caller's open session.
func (d *Dispatcher) sessionFor(ctx context.Context, sessionID string) (*session, error) {
	id, ok := ca.PeerIdentity(ctx)
	d.mu.RLock()
	defer d.mu.RUnlock()
	if !d.active {
		return nil, d.notLeader()
	}
	sess := d.byID[sessionID]
	if sess == nil || !ok || sess.nodeID != id.NodeID {
		return nil, status.Error(codes.NotFound, "unknown session; open a new one")
	}
	return sess, nil
}
