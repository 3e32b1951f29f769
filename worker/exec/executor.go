// Package exec is the agent's executor: it turns the task assignments the
// dispatcher sends into running tasks, through a runtime.Runtime, and reports
// what it observes as batched status updates.
//
// Every task gets a controller that advances it one state per step —
// ASSIGNED → ACCEPTED → PREPARING → STARTING → RUNNING → COMPLETE | FAILED,
// or SHUTDOWN once its desired state asks (REJECTED when preparing fails) —
// and persists the task, its status and its runtime handle under
// <data-dir>/tasks/<task-id>/task.json at every step that an agent restart
// must not repeat (ACCEPTED and PREPARING are redone). Tasks run independently
// of the agent, so a new Executor on the same data dir adopts the tasks that
// are still running and reports those that ended meanwhile.
//
// Logs of a finished task stay until the task is forgotten: when a complete
// assignment set no longer holds it, the dispatcher lists it as removed, or
// its desired state is REMOVE.
package exec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// TasksDir is the directory under the data dir that holds one directory per
// task; give the same path to the runtime.
const TasksDir = "tasks"

// ErrRunning is returned by a second call of Run: an Executor runs once.
var ErrRunning = errors.New("executor: Run was already called")

// Config wires an Executor.
type Config struct {
	// DataDir is the node's data dir; tasks live in DataDir/tasks.
	DataDir string
	// NodeID names this node in log messages (LogMessage.node_id).
	NodeID  string
	Runtime runtime.Runtime
	Logger  *slog.Logger
	// DeregisterDelay, when set, is how long a task that may be receiving
	// traffic (running, ready, with an address) is kept running after it
	// stops being an endpoint and before its stop signal: the cluster's
	// DNS TTL plus the time the change takes to reach every node
	// (docs/networking.md). Nil: stop at once.
	DeregisterDelay func() time.Duration
}

// Executor runs the tasks assigned to this node.
type Executor struct {
	cfg     Config
	log     *slog.Logger
	dir     string
	updates *batcher
	clock   clock // of the health checks and the drain; tests set a fake one before Run

	mu    sync.Mutex
	tasks map[string]*controller
	inbox []*shoalpb.AssignmentsMessage
	ran   bool
	wake  chan struct{} // cap 1: the inbox has messages
}

// New returns an executor; Run starts it. Assignments given before Run are
// applied once Run has loaded the tasks of an earlier agent.
func New(cfg Config) *Executor {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Executor{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "executor"),
		dir:     filepath.Join(cfg.DataDir, TasksDir),
		updates: newBatcher(),
		clock:   realClock{},
		tasks:   map[string]*controller{},
		wake:    make(chan struct{}, 1),
	}
}

// Assign queues an assignments message: a complete set (tasks absent from it
// are stopped and forgotten) or an increment. It never blocks; messages are
// applied in order by Run.
func (e *Executor) Assign(msg *shoalpb.AssignmentsMessage) {
	if msg == nil {
		return
	}
	msg = proto.Clone(msg).(*shoalpb.AssignmentsMessage)
	e.mu.Lock()
	if msg.Complete {
		// A complete set supersedes everything queued before it.
		e.inbox = e.inbox[:0]
	}
	e.inbox = append(e.inbox, msg)
	e.mu.Unlock()
	poke(e.wake)
}

// Updates delivers status changes in batches holding the latest status of
// each task that changed. Statuses wait, coalesced, while nobody receives, so
// controllers never block on a slow reader. The channel is never closed.
func (e *Executor) Updates() <-chan []*shoalpb.TaskStatusUpdate { return e.updates.out }

// Resync queues the current status of every task for Updates, for a new
// session with the leader (reports sent on a lost one may be lost too).
func (e *Executor) Resync() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.tasks {
		c.republish()
	}
}

// Run adopts the tasks of an earlier agent, applies assignments and runs the
// task controllers until ctx ends; it returns once every controller has
// stopped. Tasks keep running after Run returns, for the next Executor to
// adopt. Run may be called once.
func (e *Executor) Run(ctx context.Context) error {
	if e.cfg.Runtime == nil {
		return errors.New("executor: no runtime configured")
	}
	e.mu.Lock()
	if e.ran {
		e.mu.Unlock()
		return ErrRunning
	}
	e.ran = true
	e.mu.Unlock()
	if err := os.MkdirAll(e.dir, 0o750); err != nil {
		return fmt.Errorf("executor: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Go(func() { e.updates.run(ctx) })
	startController := func(c *controller) {
		wg.Go(func() { c.run(ctx) })
	}

	e.mu.Lock()
	for _, c := range e.load() {
		e.tasks[c.id] = c
		c.republish()
		startController(c)
	}
	e.mu.Unlock()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
		}
		e.mu.Lock()
		msgs := e.inbox
		e.inbox = nil
		for _, msg := range msgs {
			for _, c := range e.apply(msg) {
				startController(c)
			}
		}
		e.mu.Unlock()
	}
}

// apply applies one message and returns the controllers of new tasks. It
// runs with e.mu held.
func (e *Executor) apply(msg *shoalpb.AssignmentsMessage) []*controller {
	var created []*controller
	if msg.Complete {
		keep := make(map[string]bool, len(msg.Update))
		for _, t := range msg.Update {
			keep[t.GetId()] = true
		}
		for id, c := range e.tasks {
			if !keep[id] {
				c.forgetTask()
			}
		}
	}
	for _, t := range msg.Update {
		if t.GetId() == "" {
			continue
		}
		if c := e.tasks[t.Id]; c != nil {
			c.assign(t)
			continue
		}
		c := e.newTask(t)
		if c != nil {
			e.tasks[t.Id] = c
			created = append(created, c)
		}
	}
	for _, id := range msg.Remove {
		if c := e.tasks[id]; c != nil {
			c.forgetTask()
		}
	}
	return created
}

// newTask makes the controller of a task this executor did not know.
func (e *Executor) newTask(t *shoalpb.Task) *controller {
	st := t.GetStatus().GetState()
	switch {
	case st >= shoalpb.TaskState_TASK_STATE_COMPLETE:
		// Already over (history the dispatcher still lists): nothing to run.
		return nil
	case st > shoalpb.TaskState_TASK_STATE_ASSIGNED:
		// The leader saw it progress here, yet no record of it is left:
		// whatever ran is lost, and running it again could run it twice.
		c := newController(e, t, nil)
		c.lost("the node has no record of this task (its data dir was reset?)")
		return c
	}
	c := newController(e, t, nil)
	c.task.Status = newStatus(shoalpb.TaskState_TASK_STATE_ASSIGNED, "assigned")
	c.save(c.snapshotRecord())
	return c
}

// forgotten drops a controller whose task has been removed.
func (e *Executor) forgotten(c *controller) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tasks[c.id] == c {
		delete(e.tasks, c.id)
	}
}

// task returns a copy of a known task (with its current status).
func (e *Executor) task(id string) (*shoalpb.Task, bool) {
	e.mu.Lock()
	c := e.tasks[id]
	e.mu.Unlock()
	if c == nil {
		return nil, false
	}
	return c.snapshotTask(), true
}

// taskIDs lists the known tasks.
func (e *Executor) taskIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.tasks))
	for id := range e.tasks {
		ids = append(ids, id)
	}
	return ids
}

// poke wakes whoever waits on ch without ever blocking.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
