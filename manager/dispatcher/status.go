package dispatcher

import (
	"context"
	"errors"
	"sync"
	"time"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// Status reports from every node are written in batches: one Raft entry per
// chunk of a batch instead of one per report. A report is acknowledged only
// once its batch has committed, so nothing acknowledged is lost with the
// leader.
const (
	statusBatchWindow = 10 * time.Millisecond
	statusBatchMax    = 1000
	// statusChunk bounds the actions of one Raft entry.
	statusChunk = 500
	// statusWriters is how many batches are written at once: the next
	// batch is collected and proposed while earlier ones commit, and Raft
	// commits them together.
	statusWriters = 4
)

// statusReport is one UpdateTaskStatus call waiting for its batch.
type statusReport struct {
	nodeID  string
	updates []*shoalpb.TaskStatusUpdate
	done    chan error
}

// UpdateTaskStatus records task states observed by a node.
func (d *Dispatcher) UpdateTaskStatus(ctx context.Context, req *shoalpb.UpdateTaskStatusRequest) (*shoalpb.UpdateTaskStatusResponse, error) {
	sess, err := d.sessionFor(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	r := &statusReport{nodeID: sess.nodeID, updates: req.GetUpdates(), done: make(chan error, 1)}
	select {
	case d.reports <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case err := <-r.done:
		if err != nil {
			return nil, err
		}
		return &shoalpb.UpdateTaskStatusResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// writeStatuses is the leader loop that batches status reports into Raft.
// It returns once the batches it started are written.
func (d *Dispatcher) writeStatuses(ctx context.Context) {
	var writers sync.WaitGroup
	defer writers.Wait()
	slots := make(chan struct{}, statusWriters)
	for {
		var batch []*statusReport
		select {
		case <-ctx.Done():
			return
		case r := <-d.reports:
			batch = append(batch, r)
		}
		window := time.NewTimer(statusBatchWindow)
		n := len(batch[0].updates)
	collect:
		for n < statusBatchMax {
			select {
			case r := <-d.reports:
				batch = append(batch, r)
				n += len(r.updates)
			case <-window.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		window.Stop()
		slots <- struct{}{} // once ctx ends, writes fail at once and free theirs
		writers.Go(func() {
			defer func() { <-slots }()
			err := d.applyStatuses(ctx, batch)
			for _, r := range batch {
				r.done <- err
			}
		})
	}
}

// applyStatuses writes a batch, re-reading and retrying the tasks another
// writer changed meanwhile. Its chunks are proposed together.
func (d *Dispatcher) applyStatuses(ctx context.Context, batch []*statusReport) error {
	latest := map[string]*shoalpb.TaskStatusUpdate{}
	owner := map[string]string{}
	for _, r := range batch {
		for _, u := range r.updates {
			latest[u.GetTaskId()] = u
			owner[u.GetTaskId()] = r.nodeID
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		var actions []*shoalpb.StoreAction
		d.cfg.Store.View(func(tx state.ReadTx) {
			for id, u := range latest {
				t := tx.Task(id)
				if t == nil || t.NodeId != owner[id] || !advances(t.GetStatus(), u.GetStatus()) {
					continue
				}
				// Only the status travels: the stored task, spec and all,
				// stays where it is on every manager.
				change := &shoalpb.TaskStatusChange{TaskId: id, Version: t.GetMeta().GetVersion(), Status: u.Status}
				actions = append(actions, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_TaskStatus{TaskStatus: change}})
			}
		})
		errs := make([]error, (len(actions)+statusChunk-1)/statusChunk)
		var chunks sync.WaitGroup
		for i := range errs {
			chunk := actions[i*statusChunk : min((i+1)*statusChunk, len(actions))]
			chunks.Go(func() { _, errs[i] = d.cfg.Store.Propose(ctx, chunk...) })
		}
		chunks.Wait()
		conflict := false
		for _, err := range errs {
			switch {
			case errors.Is(err, state.ErrVersionConflict), errors.Is(err, state.ErrNotFound):
				// Another writer changed or deleted a task meanwhile (the
				// orchestrator reaps the history of a busy service): read
				// again, which leaves deleted tasks out.
				conflict = true
			case err != nil:
				return err
			}
		}
		if !conflict {
			return nil
		}
	}
	return errors.New("task status kept conflicting with other writes; the agent will report it again")
}

// advances reports whether a reported status moves a task forward. Terminal
// states are final, except that a node coming back may report what really
// happened to a task the leader had marked orphaned. A RUNNING task moves
// forward when its health or readiness changes: those reports keep the state.
func advances(cur, next *shoalpb.TaskStatus) bool {
	if next == nil {
		return false
	}
	c, n := cur.GetState(), next.GetState()
	if c == shoalpb.TaskState_TASK_STATE_ORPHANED {
		return terminal(n) && n != c
	}
	if terminal(c) {
		return false
	}
	if n == c && n == shoalpb.TaskState_TASK_STATE_RUNNING {
		return next.GetHealth() != cur.GetHealth() || next.GetReady() != cur.GetReady()
	}
	return n > c
}

// terminal reports whether a task in state s has ended for good.
func terminal(s shoalpb.TaskState) bool {
	switch s {
	case shoalpb.TaskState_TASK_STATE_COMPLETE, shoalpb.TaskState_TASK_STATE_SHUTDOWN, shoalpb.TaskState_TASK_STATE_FAILED,
		shoalpb.TaskState_TASK_STATE_REJECTED, shoalpb.TaskState_TASK_STATE_ORPHANED:
		return true
	}
	return false
}
