package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
	"shoal/scheduler"
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
	// Resync is how often every service is reconciled, events or not; 0
	// means ResyncInterval.
	Resync time.Duration
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
	if cfg.Resync <= 0 {
		cfg.Resync = ResyncInterval
	}
	return &Orchestrator{cfg: cfg, log: cfg.Logger.With("component", "orchestrator")}
}

// Run reconciles services and schedules tasks until ctx ends, then returns
// nil. Call it only on the leader (after a Raft barrier), and cancel ctx when
// leadership is lost; it may be called again later, starting afresh.
//
// Store events mark services dirty (service events and the task events that
// may change the service's plan, see onEvent; node, cluster and reset events
// every service); after a debounce the dirty
// services are reconciled, the tasks their plans create are placed along with
// the stored pending tasks (if an event or the plans may have given the
// scheduler work), and the plans, then the placements, are written in batches
// of at most MaxBatch actions. A new task that fits somewhere is thus created
// ASSIGNED, in one write. A full pass runs at start and every
// Config.Resync, and a timer fires at the earliest Plan.Wake. A write that
// fails (a version conflict with the dispatcher's status reports, most
// often) changes nothing: its services are read again and reconciled on a
// later pass, after a back-off.
//
// Events are read by their own goroutine, so the watch never falls behind
// while a pass runs. Agents' reports that a live task progressed (ACCEPTED,
// PREPARING, STARTING; RUNNING unless the service's last plan said
// RunningMatters) mark nothing: they are the bulk of the events of a large
// scale-up and cannot change the plan. The debounce is Debounce, or as long
// as the last pass took if that is longer: a stream of events on a large
// service makes the loop reconcile at most half of the time instead of all
// of it.
//
// A service whose depends_on holds its first tasks back (Input.Waiting) is
// reconciled again on every event of a task or the service it depends on,
// whatever the quiet rule says of them (loop.waiters).
func (o *Orchestrator) Run(ctx context.Context) error {
	l := &loop{
		Orchestrator: o,
		marks:        marks{all: true, place: true, dirty: map[string]struct{}{}},
		quiet:        map[string]struct{}{},
		waiters:      map[string][]string{},
		wakes:        map[string]time.Time{},
		pass:         time.NewTimer(0),
		passArmed:    true,
		passAt:       time.Now(),
		wake:         time.NewTimer(time.Hour),
	}
	l.addresses = newAddressBook(func(nodeID string) (out []*shoalpb.Task) {
		o.cfg.Store.View(func(tx state.ReadTx) { out = tx.TasksByNode(nodeID) })
		return out
	})
	l.wake.Stop()
	defer l.pass.Stop()
	defer l.wake.Stop()
	resync := time.NewTicker(o.cfg.Resync)
	defer resync.Stop()

	ctx, cancel := context.WithCancel(ctx)
	marked := make(chan struct{}, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		l.watch(ctx, marked)
	}()
	defer func() {
		cancel()
		<-watched
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-marked:
			l.schedulePass(max(Debounce, l.lastPass))
		case <-l.pass.C:
			l.passArmed = false
			started := time.Now()
			l.runPass(ctx)
			l.lastPass = time.Since(started)
		case <-resync.C:
			l.mark(func(m *marks) { m.all, m.place = true, true })
			l.schedulePass(0)
		case <-l.wake.C:
			now := o.cfg.Now()
			var due []string
			for id, at := range l.wakes {
				if !at.After(now) {
					due = append(due, id)
					delete(l.wakes, id)
				}
			}
			l.mark(func(m *marks) {
				for _, id := range due {
					m.dirty[id] = struct{}{}
				}
			})
			l.schedulePass(0)
			l.armWake()
		}
	}
}

// marks is what the next pass must do, filled by events and failed writes.
type marks struct {
	all   bool                // reconcile every service
	dirty map[string]struct{} // services to reconcile
	place bool                // run the scheduler: there may be a task to place
}

// loop is the state of one Run. Its fields are owned by Run's goroutine,
// except marks, quiet and waiters, which the watch goroutine uses too.
type loop struct {
	*Orchestrator
	mu    sync.Mutex
	marks marks
	// quiet are the services whose last reconciliation did not depend on
	// which live tasks run (Plan.RunningMatters false) and that were not
	// marked since that pass took its marks: their tasks' RUNNING reports
	// mark nothing. A service is taken out when a pass takes its mark, so
	// events that arrive during the pass are judged as if it were not
	// quiet, and put back only if nothing marked it meanwhile (noteQuiet).
	quiet map[string]struct{}
	// waiters are the services whose first tasks wait for their
	// depends_on, by ID, with the names of the services they depend on:
	// every event of a task or the service of such a name marks them.
	// They are few and brief (a stack's first deploy), so onEvent scans
	// them.
	waiters map[string][]string

	wakes map[string]time.Time
	// failures counts consecutive passes with a failed write.
	failures int
	lastPass time.Duration

	pass      *time.Timer
	passArmed bool
	passAt    time.Time
	wake      *time.Timer

	// addresses are the free-lists of the nodes' task subnets, kept
	// current by the watch goroutine.
	addresses *addressBook
}

// mark changes the marks under the lock.
func (l *loop) mark(fn func(m *marks)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(&l.marks)
}

// takeMarks returns the marks and clears them. The services it returns are
// no longer quiet: the pass about to read them says anew.
func (l *loop) takeMarks() marks {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.marks
	l.marks = marks{dirty: map[string]struct{}{}}
	if m.all {
		clear(l.quiet)
	}
	for id := range m.dirty {
		delete(l.quiet, id)
	}
	return m
}

// noteQuiet makes the services in ids quiet: their plans, just computed
// from what the pass read, do not depend on which live tasks run. One that
// was marked since the pass took its marks stays as it is (not quiet): an
// event the pass did not read may have changed that.
func (l *loop) noteQuiet(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.marks.all {
		return
	}
	for _, id := range ids {
		if _, marked := l.marks.dirty[id]; !marked {
			l.quiet[id] = struct{}{}
		}
	}
}

// watch marks what store events make dirty and pokes marked, until ctx
// ends. When the watch closes (it fell behind, or the store closed) it marks
// everything and watches again.
func (l *loop) watch(ctx context.Context, marked chan<- struct{}) {
	for {
		for ev := range l.cfg.Store.Watch(ctx) {
			l.addresses.observe(ev)
			l.mark(func(m *marks) { onEvent(m, l.quiet, l.waiters, ev) })
			poke(marked)
		}
		if ctx.Err() != nil {
			return
		}
		l.mark(func(m *marks) { m.all, m.place = true, true })
		poke(marked)
		select { // a closed store closes every new watch at once
		case <-ctx.Done():
			return
		case <-time.After(Debounce):
		}
	}
}

// onEvent marks what ev makes dirty; quiet are the services whose tasks'
// RUNNING reports do not matter (loop.quiet), waiters those that wait for
// the services they depend on (loop.waiters).
func onEvent(m *marks, quiet map[string]struct{}, waiters map[string][]string, ev state.Event) {
	switch o := ev.Object.(type) {
	case *shoalpb.Task:
		if taskEventMatters(ev.Kind, o, quiet) {
			m.dirty[o.GetServiceId()] = struct{}{}
		}
		markWaiters(m, waiters, o.GetServiceName()) // a service is never renamed
		// A new pending task waits for a node; a task that stops holding
		// resources may make room for one that did not fit. Status reports
		// of running tasks, the bulk of the events, do neither.
		if scheduler.IsPending(o) || !scheduler.HoldsResources(o) {
			m.place = true
		}
	case *shoalpb.Service:
		m.dirty[o.GetId()] = struct{}{}
		markWaiters(m, waiters, o.GetSpec().GetName())
	default: // nodes, the cluster (history limit), resets
		m.all, m.place = true, true
	}
}

// markWaiters marks the waiters that depend on the service named name.
func markWaiters(m *marks, waiters map[string][]string, name string) {
	for id, names := range waiters {
		if slices.Contains(names, name) {
			m.dirty[id] = struct{}{}
		}
	}
}

// taskEventMatters reports whether an event of kind on task t (the new
// version; the event does not carry the old one) may change the plan of t's
// service, quiet being the services whose plans do not depend on which live
// tasks run.
//
// Every write of the orchestrator matters: creates, deletes, shutdowns and
// removals (desired state no longer RUNNING), orphans (dead), placements
// (ASSIGNED, the node set) and explanations (PENDING). So do agents' reports
// that a task ended (dead) or that a task being stopped progressed. What
// does not matter are agents' reports that a live task progressed, the
// dispatcher only writing statuses that advance (manager/dispatcher,
// advances): ACCEPTED, PREPARING and STARTING change nothing the
// reconcilers read but the status timestamp (live's order, when a unit holds
// two live tasks, which sets Plan.RunningMatters, and then the plan is not
// empty: its writes or its failure mark the service again); RUNNING, and a
// RUNNING task's change of health or readiness, change nothing either unless
// the plan depends on which live tasks run or are ready
// (Plan.RunningMatters: a rollout or a drain under way), which a report
// cannot change.
func taskEventMatters(kind state.EventKind, t *shoalpb.Task, quiet map[string]struct{}) bool {
	if kind != state.EventUpdate || t.GetDesiredState() != shoalpb.TaskState_TASK_STATE_RUNNING {
		return true
	}
	switch t.GetStatus().GetState() {
	case shoalpb.TaskState_TASK_STATE_ACCEPTED, shoalpb.TaskState_TASK_STATE_PREPARING,
		shoalpb.TaskState_TASK_STATE_STARTING:
		return false
	case shoalpb.TaskState_TASK_STATE_RUNNING:
		_, ok := quiet[t.GetServiceId()]
		return !ok
	}
	return true // PENDING, ASSIGNED, dead
}

// poke wakes whoever waits on ch without ever blocking.
func poke(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
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

// runPass reconciles the dirty services, places the tasks that wait for a
// node, new ones included, and writes both.
func (l *loop) runPass(ctx context.Context) {
	now := l.cfg.Now()
	m := l.takeMarks()
	if m.all {
		l.addresses.reset() // rebuilt from the store, should one have drifted
	}

	ids, inputs := l.read(m.all, m.dirty, now)
	l.holdBack(ids, inputs)
	var bt batcher
	var created []*shoalpb.Task
	var quiet []string
	for i, in := range inputs {
		plan := Reconcile(in)
		if plan.Wake.IsZero() {
			delete(l.wakes, ids[i])
		} else {
			l.wakes[ids[i]] = plan.Wake
		}
		if !plan.RunningMatters {
			quiet = append(quiet, ids[i])
		}
		if plan.Empty() {
			continue
		}
		l.log.Debug("reconciled service", "service", ids[i], "create", len(plan.Create),
			"shutdown", len(plan.Shutdown), "orphan", len(plan.Orphan), "remove", len(plan.Remove),
			"delete", len(plan.Delete))
		if st := plan.Service.GetUpdateStatus(); plan.Service != nil {
			l.log.Info("rollout progressed", "service", ids[i], "state", st.GetState(),
				"spec_version", plan.Service.GetSpecVersion(), "message", st.GetMessage())
		}
		created = append(created, plan.Create...)
		bt.add(ids[i], plan.Actions())
	}
	l.noteQuiet(quiet)
	var placed []*shoalpb.Task
	if m.place || len(bt.batches) > 0 {
		placed = l.place(created, now)
	}
	ok := l.propose(ctx, "reconcile", bt.batches, false)
	if len(placed) > 0 && !l.propose(ctx, "schedule", placements(placed), true) {
		l.mark(func(m *marks) { m.place = true })
		ok = false
	}
	if ctx.Err() != nil {
		return
	}
	if ok {
		l.failures = 0
	} else {
		l.addresses.reset() // it holds addresses that were not written
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

// holdBack sets the Input.Waiting of the services that depend on others and
// have no task yet (servicespec.Waiting), and keeps loop.waiters in line. It
// reads the dependencies under l.mu, which the watch goroutine needs to mark
// anything: an event it handled before was committed before this read, one
// it handles after finds the service among the waiters and marks it again.
func (l *loop) holdBack(ids []string, inputs []Input) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var held []int
	for i, in := range inputs {
		if len(in.Service.GetSpec().GetDependsOn()) > 0 && len(in.Tasks) == 0 {
			held = append(held, i)
		} else {
			delete(l.waiters, ids[i])
		}
	}
	if len(held) == 0 {
		return
	}
	l.cfg.Store.View(func(tx state.ReadTx) {
		lookup := func(name string) (*shoalpb.Service, []*shoalpb.Task) {
			svc := tx.ServiceByName(name)
			if svc == nil {
				return nil, nil
			}
			return svc, tx.TasksByService(svc.GetId())
		}
		for _, i := range held {
			in := &inputs[i]
			in.Waiting = servicespec.Waiting(in.Service, lookup)
			if in.Waiting == "" {
				delete(l.waiters, ids[i])
				continue
			}
			names := make([]string, 0, len(in.Service.GetSpec().GetDependsOn()))
			for _, d := range in.Service.GetSpec().GetDependsOn() {
				names = append(names, d.GetService())
			}
			l.waiters[ids[i]] = names
			l.log.Debug("service waits for its dependencies", "service", ids[i], "waiting", in.Waiting)
		}
	})
}

// place runs the scheduler over the stored tasks that wait for a node and
// over created, the tasks this pass is about to create. A created task that
// gets a node is changed in place, so that it is written once, created
// ASSIGNED, instead of created PENDING and placed by another write; one that
// fits nowhere keeps PENDING with the explanation. A task placed on a node
// with a subnet gets its address in the same write (placeWithAddresses).
// place returns the
// placements of stored tasks, to write as updates.
func (l *loop) place(created []*shoalpb.Task, now time.Time) []*shoalpb.Task {
	var nodes []*shoalpb.Node
	var tasks []*shoalpb.Task
	var nets *networkSet
	l.cfg.Store.View(func(tx state.ReadTx) {
		nodes = tx.Nodes()
		tasks = tx.Tasks()
		nets = newNetworkSet(tx)
	})
	isNew := make(map[string]*shoalpb.Task, len(created))
	for _, t := range created {
		isNew[t.GetId()] = t
	}
	var stored []*shoalpb.Task
	for _, u := range placeWithAddresses(nodes, append(tasks, created...), nets, now, l.addresses) {
		if t := isNew[u.GetId()]; t != nil {
			t.NodeId, t.Status, t.Address, t.Networks = u.NodeId, u.Status, u.Address, u.Networks
			continue
		}
		stored = append(stored, u)
	}
	return stored
}

// placements batches the updates of placed tasks.
func placements(updates []*shoalpb.Task) []batch {
	actions := make([]*shoalpb.StoreAction, len(updates))
	for i, t := range updates {
		actions[i] = taskAction(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, t)
	}
	var bt batcher
	bt.add("", actions)
	return bt.batches
}

// maxInFlight is how many batches of one pass are proposed at once. Raft
// commits concurrent proposals together, so a plan of thousands of tasks
// takes a few round trips instead of one per batch.
const maxInFlight = 8

// propose writes batches; a failed batch marks its services dirty for a
// later pass. It reports whether every batch was written. Batches that only
// create tasks, or any batches when anyOrder is set, go up to maxInFlight at
// once; another batch waits for the earlier ones and holds back the later
// ones, so a plan's order (its new tasks before its shutdowns) survives.
// The first failure of a streak is logged at Info (a version conflict:
// someone wrote first) or Warn; later ones at Debug.
func (l *loop) propose(ctx context.Context, step string, batches []batch, anyOrder bool) bool {
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxInFlight)
	for i, b := range batches {
		if !anyOrder && !b.onlyCreates() {
			wg.Wait()
			_, errs[i] = l.cfg.Store.Propose(ctx, b.actions...)
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			_, errs[i] = l.cfg.Store.Propose(ctx, b.actions...)
		})
	}
	wg.Wait()
	ok := true
	for i, err := range errs {
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		b := batches[i]
		l.mark(func(m *marks) {
			for _, id := range b.services {
				m.dirty[id] = struct{}{}
			}
		})
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
