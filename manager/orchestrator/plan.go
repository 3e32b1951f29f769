package orchestrator

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/internal/ids"
	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// Defaults of the cluster and service settings the reconcilers read.
const (
	// DefaultTaskHistoryLimit is the number of dead tasks kept per unit when
	// the cluster spec leaves task_history_limit at 0.
	DefaultTaskHistoryLimit = 5
	// DefaultRestartDelay is the restart delay when delay_ms is 0.
	DefaultRestartDelay = 5 * time.Second
)

// Messages the orchestrator writes into task statuses.
const (
	msgPending     = "pending"
	msgNodeDown    = "node down"
	msgNodeRemoved = "node removed"
	msgNodeDrained = "node drained"
)

// Settings are the cluster-wide settings the reconcilers read.
type Settings struct {
	// TaskHistoryLimit is how many dead tasks each unit keeps; values below
	// 1 mean DefaultTaskHistoryLimit.
	TaskHistoryLimit int
}

// SettingsOf reads the settings of the cluster object c, which may be nil.
func SettingsOf(c *shoalpb.Cluster) Settings {
	return Settings{TaskHistoryLimit: int(c.GetSpec().GetTaskHistoryLimit())}
}

func (s Settings) historyLimit() int {
	if s.TaskHistoryLimit < 1 {
		return DefaultTaskHistoryLimit
	}
	return s.TaskHistoryLimit
}

// Input is everything the reconciliation of one service reads. Nothing in it
// is modified by Reconcile.
type Input struct {
	// Service is the service; nil when it was removed, in which case Tasks
	// are its leftover tasks.
	Service *shoalpb.Service
	// Tasks are every task of the service, in any order.
	Tasks []*shoalpb.Task
	// Nodes are every node of the cluster.
	Nodes    []*shoalpb.Node
	Settings Settings
	// Now is the time the plan is made at: new tasks' timestamps, restart
	// delays.
	Now time.Time
	// NewID returns the ID of a new task; nil means ids.New.
	NewID func() string
	// Waiting, when not empty, says why the service's first tasks wait for
	// its depends_on (servicespec.Waiting, which is empty once the service
	// has a task): Reconcile plans nothing for it.
	Waiting string
}

// Plan is what one reconciliation wants written. Every task appears in at
// most one list. Changed tasks are copies of the input tasks that keep their
// Meta (so the write carries the version that was read).
type Plan struct {
	// Create are new tasks: desired RUNNING, status PENDING "pending".
	Create []*shoalpb.Task
	// Shutdown are tasks whose desired state becomes SHUTDOWN.
	Shutdown []*shoalpb.Task
	// Remove are tasks whose desired state becomes REMOVE (service removed).
	Remove []*shoalpb.Task
	// Orphan are tasks whose node is down or gone: status ORPHANED, desired
	// SHUTDOWN (unless already REMOVE).
	Orphan []*shoalpb.Task
	// Delete are the IDs of tasks to delete: old history, stopped REMOVE
	// tasks.
	Delete []string
	// Service, when set, is the service to write: a copy of the input
	// service that keeps its Meta (a compare-and-swap against controlapi's
	// writes) with the rollout's new update_status, or, for failure action
	// rollback, the spec it returns to (rollout.go).
	Service *shoalpb.Service
	// Wake is the earliest future moment at which reconciling again would
	// give a different plan with nothing else changed (a restart delay, a
	// rollout's delay, monitor or auto-promotion ending, a drain deadline);
	// zero if there is none.
	Wake time.Time
	// RunningMatters reports whether the plan depends on which live tasks
	// of the service are RUNNING or ready, or on when their statuses last
	// changed: a rollout is under way (update.go, rollout.go), a unit holds
	// more than one live task (keepOne), tasks leave a drained node one by
	// one (drain.go), or the service is being scaled down (scaleDown). When
	// it is false, no agent's report that a live task moved up to RUNNING
	// or became ready can change the plan, and the loop does not reconcile
	// the service for such reports (onEvent). Such a report never changes
	// RunningMatters itself: it depends on the service's update_status, on
	// which tasks are live, outdated or on drained nodes and on how many
	// units are occupied, not on how far live tasks have got.
	RunningMatters bool
}

// Empty reports whether the plan writes nothing (Wake aside).
func (p Plan) Empty() bool { return p.Writes() == 0 }

// Writes is the number of store actions the plan needs.
func (p Plan) Writes() int {
	n := len(p.Create) + len(p.Shutdown) + len(p.Remove) + len(p.Orphan) + len(p.Delete)
	if p.Service != nil {
		n++
	}
	return n
}

// Reconcile computes the plan of one service. It dispatches on the service's
// mode (a removed service has its tasks removed, one that waits for its
// dependencies gets none) and is a pure function of its input.
func Reconcile(in Input) Plan {
	b := newBuilder(in)
	switch {
	case in.Service == nil:
		b.removed(in.Tasks)
		return b.plan
	case in.Waiting != "":
		return b.plan
	case in.Service.GetSpec().GetMode() == shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB:
		b.replicatedJob(in.Tasks)
	case in.Service.GetSpec().GetMode() == shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
		b.globalJob(in.Tasks)
	case b.judgeFailures(in.Tasks):
		return b.plan // rolled back: the next pass rolls to the spec written
	case in.Service.GetSpec().GetMode() == shoalpb.ServiceMode_SERVICE_MODE_GLOBAL:
		b.global(in.Tasks)
	default:
		b.replicated(in.Tasks)
	}
	b.writeStatus()
	b.reapHistory(in.Tasks)
	return b.plan
}

// builder accumulates a Plan and remembers which tasks it already changed,
// so that no task is written twice in one plan.
type builder struct {
	svc      *shoalpb.Service
	nodes    map[string]*shoalpb.Node
	settings Settings
	now      time.Time
	newID    func() string

	// ro is the service's rollout; nil for jobs and removed services,
	// which are not rolled.
	ro *rollout
	// drains: some node is drained (onDrained need not look otherwise).
	drains bool

	plan    Plan
	touched map[string]bool
	liveBuf []*shoalpb.Task // live's result
}

func newBuilder(in Input) *builder {
	b := &builder{
		svc:      in.Service,
		nodes:    make(map[string]*shoalpb.Node, len(in.Nodes)),
		settings: in.Settings,
		now:      in.Now,
		newID:    in.NewID,
		touched:  map[string]bool{},
	}
	if b.newID == nil {
		b.newID = ids.New
	}
	for _, n := range in.Nodes {
		b.nodes[n.GetId()] = n
		b.drains = b.drains || n.GetSpec().GetAvailability() == shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
	}
	if in.Service != nil && !b.isJob() {
		b.ro = newRollout(in.Service)
	}
	return b
}

// copyOf marks t as changed and returns a copy to change, or nil if t was
// already changed by this plan.
func (b *builder) copyOf(t *shoalpb.Task) *shoalpb.Task {
	if b.touched[t.GetId()] {
		return nil
	}
	b.touched[t.GetId()] = true
	return proto.Clone(t).(*shoalpb.Task)
}

// shutdown sets t's desired state to SHUTDOWN; message, if set, replaces the
// status message so users see why.
func (b *builder) shutdown(t *shoalpb.Task, message string) {
	if t.GetDesiredState() >= shoalpb.TaskState_TASK_STATE_SHUTDOWN {
		return
	}
	c := b.copyOf(t)
	if c == nil {
		return
	}
	c.DesiredState = shoalpb.TaskState_TASK_STATE_SHUTDOWN
	if message != "" {
		if c.Status == nil {
			c.Status = &shoalpb.TaskStatus{}
		}
		c.Status.Message = message
	}
	b.plan.Shutdown = append(b.plan.Shutdown, c)
}

// orphan marks t ORPHANED: its node is down or gone, so nobody will report
// what happens to it.
func (b *builder) orphan(t *shoalpb.Task, message string) {
	c := b.copyOf(t)
	if c == nil {
		return
	}
	if c.DesiredState < shoalpb.TaskState_TASK_STATE_SHUTDOWN {
		c.DesiredState = shoalpb.TaskState_TASK_STATE_SHUTDOWN
	}
	c.Status = &shoalpb.TaskStatus{
		State:     shoalpb.TaskState_TASK_STATE_ORPHANED,
		Message:   message,
		Timestamp: timestamppb.New(b.now),
	}
	b.plan.Orphan = append(b.plan.Orphan, c)
}

// remove sets t's desired state to REMOVE.
func (b *builder) remove(t *shoalpb.Task) {
	if t.GetDesiredState() == shoalpb.TaskState_TASK_STATE_REMOVE {
		return
	}
	c := b.copyOf(t)
	if c == nil {
		return
	}
	c.DesiredState = shoalpb.TaskState_TASK_STATE_REMOVE
	b.plan.Remove = append(b.plan.Remove, c)
}

// del deletes t.
func (b *builder) del(t *shoalpb.Task) {
	if b.touched[t.GetId()] {
		return
	}
	b.touched[t.GetId()] = true
	b.plan.Delete = append(b.plan.Delete, t.GetId())
}

// create adds a new task of the service in slot (replicated) or on nodeID
// (global): a copy of the service's current task spec, desired RUNNING,
// PENDING since now.
func (b *builder) create(slot uint64, nodeID string) {
	now := timestamppb.New(b.now)
	var spec *shoalpb.TaskSpec
	if s := b.svc.GetSpec().GetTask(); s != nil {
		spec = proto.Clone(s).(*shoalpb.TaskSpec)
	}
	t := &shoalpb.Task{
		Id:           b.newID(),
		Meta:         &shoalpb.Meta{CreatedAt: now, UpdatedAt: now},
		ServiceId:    b.svc.GetId(),
		ServiceName:  b.svc.GetSpec().GetName(),
		Slot:         slot,
		NodeId:       nodeID,
		Spec:         spec,
		SpecVersion:  b.svc.GetSpecVersion(),
		DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
		Status: &shoalpb.TaskStatus{
			State:     shoalpb.TaskState_TASK_STATE_PENDING,
			Message:   msgPending,
			Timestamp: now,
		},
		JobIteration: b.svc.GetJobIteration(),
	}
	b.touched[t.Id] = true
	b.plan.Create = append(b.plan.Create, t)
}

// wakeAt records that the plan changes at moment at.
func (b *builder) wakeAt(at time.Time) {
	if !at.After(b.now) {
		return
	}
	if b.plan.Wake.IsZero() || at.Before(b.plan.Wake) {
		b.plan.Wake = at
	}
}

// isJob reports whether the service runs to completion.
func (b *builder) isJob() bool {
	return servicespec.IsJob(b.svc.GetSpec().GetMode())
}

// outdated reports whether t runs a task spec other than the service's
// current one. A service change that leaves the task spec alone (replicas,
// labels, the name) bumps spec_version without making any task outdated, so
// scaling never restarts the tasks it keeps.
func (b *builder) outdated(t *shoalpb.Task) bool {
	return !sameTaskSpec(t, b.svc.GetSpec().GetTask())
}

// sameTaskSpec reports whether t was made from spec.
func sameTaskSpec(t *shoalpb.Task, spec *shoalpb.TaskSpec) bool {
	return proto.Equal(t.GetSpec(), spec)
}
