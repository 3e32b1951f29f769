package exec

import (
	"context"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// flushInterval is the most often a batch is delivered; a change waits at
// most this long while the reader keeps up.
const flushInterval = 100 * time.Millisecond

// batcher coalesces status changes per task and delivers them in batches.
// Publishing never blocks: while nobody receives, a task's newer status
// replaces its older one in the pending batch.
type batcher struct {
	out     chan []*shoalpb.TaskStatusUpdate
	changed chan struct{} // cap 1

	mu      sync.Mutex
	pending map[string]*shoalpb.TaskStatusUpdate
}

func newBatcher() *batcher {
	return &batcher{
		out:     make(chan []*shoalpb.TaskStatusUpdate),
		changed: make(chan struct{}, 1),
		pending: map[string]*shoalpb.TaskStatusUpdate{},
	}
}

// publish records the task's latest status.
func (b *batcher) publish(taskID string, st *shoalpb.TaskStatus) {
	u := &shoalpb.TaskStatusUpdate{TaskId: taskID, Status: proto.Clone(st).(*shoalpb.TaskStatus)}
	b.mu.Lock()
	b.pending[taskID] = u
	b.mu.Unlock()
	poke(b.changed)
}

// run delivers batches until ctx ends.
func (b *batcher) run(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.changed:
		}
		// Let changes gather until flushInterval has passed since the last
		// batch, so a busy node sends few large batches.
		if wait := flushInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		for {
			batch := b.snapshot()
			if len(batch) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-b.changed:
				continue // a newer status may replace one in the batch
			case b.out <- batch:
				b.ack(batch)
				last = time.Now()
			}
			break
		}
	}
}

// snapshot is the pending batch, ordered by task ID. The updates are shared
// with pending, which only ever replaces them, never modifies them.
func (b *batcher) snapshot() []*shoalpb.TaskStatusUpdate {
	b.mu.Lock()
	defer b.mu.Unlock()
	batch := make([]*shoalpb.TaskStatusUpdate, 0, len(b.pending))
	for _, u := range b.pending {
		batch = append(batch, u)
	}
	sort.Slice(batch, func(i, j int) bool { return batch[i].TaskId < batch[j].TaskId })
	return batch
}

// ack drops the delivered updates that no newer status has replaced.
func (b *batcher) ack(batch []*shoalpb.TaskStatusUpdate) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range batch {
		if b.pending[u.TaskId] == u {
			delete(b.pending, u.TaskId)
		}
	}
}
