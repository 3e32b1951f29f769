package exec

import (
	"context"
	"fmt"
	"time"

	shoalpb "shoal/proto"
)

// stopAllPoll is how often StopAll looks whether the last task has gone.
const stopAllPoll = 50 * time.Millisecond

// StopAll stops and removes every task of this node, for a node that leaves
// the cluster: it applies an empty complete assignment set and returns once
// no task is left, or when ctx ends. Run must be running, and nothing else
// may assign tasks meanwhile.
func (e *Executor) StopAll(ctx context.Context) error {
	e.Assign(&shoalpb.AssignmentsMessage{Complete: true})
	tick := time.NewTicker(stopAllPoll)
	defer tick.Stop()
	for {
		e.mu.Lock()
		queued, left := len(e.inbox), len(e.tasks)
		e.mu.Unlock()
		if queued == 0 && left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop the node's tasks: %d still running: %w", left, ctx.Err())
		case <-tick.C:
		}
	}
}
