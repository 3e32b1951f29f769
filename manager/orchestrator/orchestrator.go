package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// Timing of the leader loop.
const (
	// Debounce is how long the loop collects events before a pass.
	Debounce = 10 * time.Millisecond
	// ResyncInterval is how often every service is reconciled, events or
	// not.
	ResyncInterval = 10 * time.Second
	// maxRetryDelay caps the back-off after failed writes.
	maxRetryDelay = 2 * time.Second
)

// Store is what the orchestrator needs of the replicated store; *state.Store
// implements it.
type Store interface {
	// View runs fn on a consistent, read-only snapshot.
	View(fn func(tx state.ReadTx))
	// Propose applies actions atomically; an UPDATE whose version is not
	// the stored one fails with state.ErrVersionConflict.
	Propose(ctx context.Context, actions ...*shoalpb.StoreAction) (uint64, error)
	// Watch streams committed changes; the channel closes when ctx ends or
	// the watcher falls behind.
	Watch(ctx context.Context) <-chan state.Event
}

// Config wires an Orchestrator.
type Config struct {
	Store Store
	// Logger receives the loop's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock of new tasks' timestamps and restart delays; nil
	// means time.Now.
	Now func() time.Time
}

// Orchestrator is the leader loop that keeps every service's tasks in line
// with its spec and places pending tasks.
type Orchestrator struct {
	cfg Config
	log *slog.Logger
}

// New returns an orchestrator; it does nothing until Run.
func New(cfg Config) *Orchestrator {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Orchestrator{cfg: cfg, log: cfg.Logger.With("component", "orchestrator")}
}

// Run reconciles services and schedules tasks until ctx ends, then returns
// nil. Call it only on the leader (after a Raft barrier), and cancel ctx when
// leadership is lost; it may be called again later, starting afresh.
//
// Store events mark services dirty (task and service events that service;
// node, cluster and reset events every service); after Debounce the dirty
// services are reconciled, their plans written in batches of at most
// MaxBatch actions, then pending tasks are scheduled. A full pass runs at
// start and every ResyncInterval, and a timer fires at the earliest Plan.Wake.
// A write that fails (a version conflict with the dispatcher's status
// reports, most often) changes nothing: its services are read again and
// reconciled on a later pass, after a back-off.
func (o *Orchestrator) Run(ctx context.Context) error {
	l := &loop{
		Orchestrator: o,
		all:          true,
		dirty:        map[string]struct{}{},
		wakes:        map[string]time.Time{},
		pass:         time.NewTimer(0),
		passArmed:    true,
		passAt:       time.Now(),
		wake:         time.NewTimer(time.Hour),
	}
	l.wake.Stop()
	defer l.pass.Stop()
	defer l.wake.Stop()
	resync := time.NewTicker(ResyncInterval)
	defer resync.Stop()

	events := o.cfg.Store.Watch(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				// Fell behind (or the store closed): watch again before
				// the next pass reads everything.
				events = nil
				l.all = true
				l.schedulePass(l.retryDelay())
				continue
			}
			l.onEvent(ev)
			l.schedulePass(Debounce)
		case <-l.pass.C:
			l.passArmed = false
			if events == nil {
				events = o.cfg.Store.Watch(ctx)
			}
			l.runPass(ctx)
		case <-resync.C:
			l.all = true
			l.schedulePass(0)
		case <-l.wake.C:
			now := o.cfg.Now()
			for id, at := range l.wakes {
				if !at.After(now) {
					l.dirty[id] = struct{}{}
					delete(l.wakes, id)
				}
			}
			l.schedulePass(0)
			l.armWake()
		}
	}
}

// loop is the state of one Run, owned by its goroutine.
type loop struct {
	*Orchestrator
	all   bool                // reconcile every service on the next pass
	dirty map[string]struct{} // services to reconcile on the next pass
	wakes map[string]time.Time
	// failures counts consecutive passes with a failed write.
	failures int

	pass      *time.Timer
	passArmed bool
	passAt    time.Time
	wake      *time.Timer
}

// onEvent marks what ev makes dirty.
func (l *loop) onEvent(ev state.Event) {
	switch o := ev.Object.(type) {
	case *shoalpb.Task:
		l.dirty[o.GetServiceId()] = struct{}{}
	case *shoalpb.Service:
		l.dirty[o.GetId()] = struct{}{}
	default: // nodes, the cluster (history limit), resets
		l.all = true
	}
}

// schedulePass makes the next pass happen within d.
func (l *loop) schedulePass(d time.Duration) {
	at := time.Now().Add(d)
	if l.passArmed && !l.passAt.After(at) {
		return
	}
	l.pass.Reset(d)
	l.passArmed, l.passAt = true, at
}

// retryDelay is the back-off after l.failures failed passes.
func (l *loop) retryDelay() time.Duration {
	d := Debounce << min(l.failures, 10)
	return min(d, maxRetryDelay)
}

// armWake sets the wake timer to the earliest Plan.Wake.
func (l *loop) armWake() {
	var first time.Time
	for _, at := range l.wakes {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	if first.IsZero() {
		l.wake.Stop()
		return
	}
	l.wake.Reset(max(0, first.Sub(l.cfg.Now())))
}

// runPass reconciles the dirty services, writes their plans, then schedules.
func (l *loop) runPass(ctx context.Context) {
	now := l.cfg.Now()
	all, dirty := l.all, l.dirty
	l.all, l.dirty = false, map[string]struct{}{}

	ids, inputs := l.read(all, dirty, now)
	var bt batcher
	for i, in := range inputs {
		plan := Reconcile(in)
		if plan.Wake.IsZero() {
			delete(l.wakes, ids[i])
		} else {
			l.wakes[ids[i]] = plan.Wake
		}
		if plan.Empty() {
			continue
		}
		l.log.Debug("reconciled service", "service", ids[i], "create", len(plan.Create),
			"shutdown", len(plan.Shutdown), "orphan", len(plan.Orphan), "remove", len(plan.Remove),
			"delete", len(plan.Delete))
		bt.add(ids[i], plan.Actions())
	}
	ok := l.propose(ctx, "reconcile", bt.batches)
	// Scheduling reads the store again, so it sees the tasks just created.
	ok = l.schedule(ctx, now) && ok
	if ctx.Err() != nil {
		return
	}
	if ok {
		l.failures = 0
	} else {
		l.failures++
		l.schedulePass(l.retryDelay())
	}
	l.armWake()
}

// read builds the inputs of the services to reconcile: every service and
// every service ID that tasks still name when all is set, else those in
// dirty. ids[i] is the service ID of inputs[i].
func (l *loop) read(all bool, dirty map[string]struct{}, now time.Time) (ids []string, inputs []Input) {
	l.cfg.Store.View(func(tx state.ReadTx) {
		settings := SettingsOf(tx.Cluster())
		nodes := tx.Nodes()
		add := func(id string, svc *shoalpb.Service, tasks []*shoalpb.Task) {
			ids = append(ids, id)
			inputs = append(inputs, Input{Service: svc, Tasks: tasks, Nodes: nodes, Settings: settings, Now: now})
		}
		if !all {
			for id := range dirty {
				add(id, tx.Service(id), tx.TasksByService(id))
			}
			return
		}
		byService := map[string][]*shoalpb.Task{}
		for _, t := range tx.Tasks() {
			byService[t.GetServiceId()] = append(byService[t.GetServiceId()], t)
		}
		for _, svc := range tx.Services() {
			add(svc.GetId(), svc, byService[svc.GetId()])
			delete(byService, svc.GetId())
		}
		left := make([]string, 0, len(byService))
		for id := range byService {
			left = append(left, id)
		}
		slices.Sort(left)
		for _, id := range left { // tasks of removed services
			add(id, nil, byService[id])
		}
	})
	return ids, inputs
}

// schedule places pending tasks and writes the result.
func (l *loop) schedule(ctx context.Context, now time.Time) bool {
	var nodes []*shoalpb.Node
	var tasks []*shoalpb.Task
	l.cfg.Store.View(func(tx state.ReadTx) {
		nodes = tx.Nodes()
		tasks = tx.Tasks()
	})
	updates := Schedule(nodes, tasks, now)
	if len(updates) == 0 {
		return true
	}
	actions := make([]*shoalpb.StoreAction, len(updates))
	for i, t := range updates {
		actions[i] = taskAction(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, t)
	}
	var bt batcher
	bt.add("", actions)
	return l.propose(ctx, "schedule", bt.batches)
}

// propose writes batches; a failed batch marks its services dirty for a
// later pass. It reports whether every batch was written. The first failure
// of a streak is logged at Info (a version conflict: someone wrote first) or
// Warn; later ones at Debug.
func (l *loop) propose(ctx context.Context, step string, batches []batch) bool {
	ok := true
	for _, b := range batches {
		_, err := l.cfg.Store.Propose(ctx, b.actions...)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		for _, id := range b.services {
			l.dirty[id] = struct{}{}
		}
		level := slog.LevelWarn
		switch {
		case l.failures > 0 || !ok:
			level = slog.LevelDebug
		case errors.Is(err, state.ErrVersionConflict):
			level = slog.LevelInfo
		}
		l.log.Log(ctx, level, "writing tasks failed; will read again and retry", "step", step,
			"actions", len(b.actions), "services", len(b.services), "err", err)
		ok = false
	}
	return ok
}
