// Package containerd is the production runtime: each task is a container run
// by containerd (namespace "shoal", overlayfs snapshotter, runc) through its
// Go client.
//
// Unless given the address of an existing containerd, the runtime starts its
// own as a child, with root, state and sockets under DataDir/containerd and
// runc state under DataDir/containerd/runc, and restarts it if it exits.
// Containers are supervised by their runc shims, not by containerd or the
// agent, so they keep running across agent and containerd restarts; a new
// Runtime adopts them.
//
// Everything the runtime keeps per task beyond containerd's records is in
// DataDir/containerd/tasks/<task ID>/:
//
//	log.jsonl    the task's output (runtime/tasklog), written by
//	             `shoal task-logger`, which the shim starts (RunTaskLogger)
//	logger.lock  held by the task-logger while it runs
//	exit.json    how the task ended (runtime.ExitStatus), written before the
//	             container is deleted, so that Adopt finds an ended task
package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	ctrdlog "github.com/containerd/log"

	"shoal/internal/jsonfile"
	"shoal/internal/procs"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// Namespace is the containerd namespace of shoal's containers and images.
const Namespace = "shoal"

// snapshotter is the only snapshotter shoal uses.
const snapshotter = "overlayfs"

// Files in a task's directory.
const (
	logFile    = "log.jsonl"
	exitFile   = "exit.json"
	loggerLock = "logger.lock"
	loggerErr  = "logger.err"
)

// Labels shoal sets on its containers.
const (
	labelTask       = "shoal.task"
	labelStopSignal = "shoal.stop-signal"
	labelMemory     = "shoal.memory-limit"
)

// Config configures the containerd runtime.
type Config struct {
	// DataDir is the node's data directory; everything of the runtime is
	// under DataDir/containerd.
	DataDir string
	// Address is the socket of a running containerd to use; empty: the
	// runtime starts its own.
	Address string
	// Network puts tasks into their own network namespaces; nil: tasks
	// share the host's network.
	Network runtime.Network
	// Images fetches images this node lacks from other nodes; nil: none.
	Images runtime.ImageSource
	// Volume returns the host directory of a named volume, creating it if
	// needed; nil: volume mounts are refused.
	Volume func(name string) (hostPath string, err error)
	// Logger is the shoal binary that provides `task-logger`; default: the
	// running executable.
	Logger string
	// PullTimeout bounds one attempt to pull an image from its registry;
	// default 30 s.
	PullTimeout time.Duration
	Log         *slog.Logger
}

// Runtime runs tasks as containerd containers.
type Runtime struct {
	cfg    Config
	p      paths
	c      *client.Client
	d      *daemon // nil when using Config.Address
	log    *slog.Logger
	logger string

	// ctx lives until Close; the handles' monitors run under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	handles map[string]*handle

	images imageCache
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to containerd, starting it first unless cfg.Address is set,
// and returns once it answers.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("containerd runtime: Config.DataDir is empty")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	// The client logs through logrus at info level to stderr ("fetch
	// failed" for every registry miss); what matters reaches the caller
	// as an error, so only its warnings are kept.
	_ = ctrdlog.SetLevel("warn")
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = 30 * time.Second
	}
	if cfg.Logger == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("containerd runtime: find the shoal binary for task-logger: %w", err)
		}
		cfg.Logger = exe
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	r := &Runtime{
		cfg:     cfg,
		p:       paths{base: filepath.Join(dataDir, "containerd")},
		log:     cfg.Log.With("component", "runtime", "runtime", "containerd"),
		logger:  cfg.Logger,
		handles: map[string]*handle{},
	}
	for _, dir := range []string{r.p.base, r.p.tasks(), r.p.fifos()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("containerd runtime: %w", err)
		}
	}
	addr := cfg.Address
	if addr == "" {
		addr = r.p.socket()
		// A containerd of this data dir that still answers (the agent's
		// earlier child, still shutting down, or Purge while the node
		// runs) is used rather than a second one started on the same root.
		if !serving(ctx, addr) {
			if r.d, err = startDaemon(r.p, r.log); err != nil {
				return nil, err
			}
		}
	}
	r.c, err = client.New(addr, client.WithDefaultNamespace(Namespace), client.WithTimeout(0))
	if err != nil {
		r.stopDaemon()
		return nil, fmt.Errorf("containerd runtime: connect to %s: %w", addr, err)
	}
	if err := waitServing(ctx, r.c, r.p.daemonLog()); err != nil {
		r.c.Close()
		r.stopDaemon()
		return nil, fmt.Errorf("containerd runtime: %w; its log ends: %s", err, tail(r.p.daemonLog()))
	}
	r.ctx, r.cancel = context.WithCancel(namespaces.WithNamespace(context.Background(), Namespace))
	return r, nil
}

func (r *Runtime) stopDaemon() {
	if r.d != nil {
		r.d.close()
	}
}

// Close stops watching tasks and stops the containerd the runtime started.
// Containers keep running; a new Runtime adopts them.
func (r *Runtime) Close() error {
	r.cancel()
	r.wg.Wait()
	err := r.c.Close()
	r.stopDaemon()
	return err
}

// Client is the containerd client, for callers that need more than the
// Runtime offers (tests, diagnostics).
func (r *Runtime) Client() *client.Client { return r.c }

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return "containerd" }

// LogPath implements runtime.Runtime.
func (r *Runtime) LogPath(taskID string) string {
	return filepath.Join(r.taskDir(taskID), logFile)
}

// LogPath is where the runtime of the node whose data dir is dataDir writes
// a task's output, for callers that hold no Runtime yet.
func LogPath(dataDir, taskID string) string {
	return filepath.Join(paths{base: filepath.Join(dataDir, "containerd")}.tasks(), taskID, logFile)
}

func (r *Runtime) taskDir(taskID string) string { return filepath.Join(r.p.tasks(), taskID) }

// nsCtx puts ctx into shoal's namespace.
func nsCtx(ctx context.Context) context.Context { return namespaces.WithNamespace(ctx, Namespace) }

// Prepare checks the spec and makes sure the task's image is here, pulling
// or fetching it from another node if not.
func (r *Runtime) Prepare(ctx context.Context, t *shoalpb.Task) error {
	if err := validID(t.GetId()); err != nil {
		return err
	}
	if err := r.checkSpec(t); err != nil {
		return err
	}
	if _, err := r.ensureImage(nsCtx(ctx), t.GetSpec().GetContainer().GetImage()); err != nil {
		return err
	}
	return os.MkdirAll(r.taskDir(t.Id), 0o750)
}

// Start creates the task's container and starts it.
func (r *Runtime) Start(ctx context.Context, t *shoalpb.Task) (runtime.Handle, error) {
	ctx = nsCtx(ctx)
	id := t.GetId()
	if err := validID(id); err != nil {
		return nil, err
	}
	if err := r.checkSpec(t); err != nil {
		return nil, err
	}
	// A start by an agent that stopped half-way may have left a running
	// container: that one is the task, not a second.
	if h, err := r.adoptRunning(ctx, id); err != nil || h != nil {
		return h, err
	}
	img, err := r.ensureImage(ctx, t.GetSpec().GetContainer().GetImage())
	if err != nil {
		return nil, err
	}
	dir := r.taskDir(id)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(dir, exitFile)); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var att *runtime.Attachment
	if r.cfg.Network != nil {
		a, err := r.cfg.Network.Attach(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("attach task %s to the network: %w", id, err)
		}
		att = &a
	}
	h, err := r.create(ctx, t, img, att)
	if err != nil {
		if att != nil {
			if derr := r.cfg.Network.Detach(context.WithoutCancel(ctx), id); derr != nil {
				r.log.Warn("detach after a failed start", "task", id, "err", derr)
			}
		}
		return nil, err
	}
	r.log.Debug("task started", "task", id, "pid", h.pid)
	return h, nil
}

// adoptRunning returns a handle on the task's container if one runs.
func (r *Runtime) adoptRunning(ctx context.Context, id string) (*handle, error) {
	r.mu.Lock()
	h := r.handles[id]
	r.mu.Unlock()
	if h != nil {
		select {
		case <-h.done:
			// Ended; its monitor has deleted the container.
			r.mu.Lock()
			delete(r.handles, id)
			r.mu.Unlock()
		default:
			return h, nil
		}
	}
	ctr, err := r.c.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	task, err := ctr.Task(ctx, nil)
	if err == nil {
		if st, serr := task.Status(ctx); serr == nil && st.Status == client.Running {
			return r.watch(ctx, ctr, nil)
		}
	}
	// Created but not started, or ended: clear it for a fresh start.
	if err := r.deleteContainer(ctx, ctr); err != nil {
		return nil, fmt.Errorf("remove the leftover container of task %s: %w", id, err)
	}
	return nil, nil
}

// handleState is what Handle.State returns.
type handleState struct {
	ContainerID string `json:"container_id"`
	PID         uint32 `json:"pid"`
}

// Adopt finds a task started by an earlier agent: its container, or the
// exit status it left when it ended.
func (r *Runtime) Adopt(ctx context.Context, taskID string, state []byte) (runtime.Handle, error) {
	ctx = nsCtx(ctx)
	if err := validID(taskID); err != nil {
		return nil, err
	}
	r.mu.Lock()
	h := r.handles[taskID]
	r.mu.Unlock()
	if h != nil {
		return h, nil
	}
	ctr, err := r.c.LoadContainer(ctx, taskID)
	if errdefs.IsNotFound(err) {
		var st runtime.ExitStatus
		if jsonfile.Read(filepath.Join(r.taskDir(taskID), exitFile), &st) == nil {
			return endedHandle(r, taskID, st), nil
		}
		return nil, fmt.Errorf("%w: no container for task %s", runtime.ErrGone, taskID)
	}
	if err != nil {
		return nil, err
	}
	var saved handleState
	if len(state) > 0 {
		_ = json.Unmarshal(state, &saved)
	}
	return r.watch(ctx, ctr, &saved)
}

// Remove kills the task's container if it runs and deletes it with its
// snapshot, network attachment and logs.
func (r *Runtime) Remove(ctx context.Context, taskID string) error {
	ctx = nsCtx(ctx)
	if err := validID(taskID); err != nil {
		return err
	}
	r.mu.Lock()
	h := r.handles[taskID]
	delete(r.handles, taskID)
	r.mu.Unlock()
	if h != nil {
		// Its monitor would race this cleanup; end it first.
		h.stopMonitor()
	}
	var errs []error
	ctr, err := r.c.LoadContainer(ctx, taskID)
	switch {
	case err == nil:
		errs = append(errs, r.deleteContainer(ctx, ctr))
	case !errdefs.IsNotFound(err):
		errs = append(errs, err)
	}
	if r.cfg.Network != nil {
		errs = append(errs, r.cfg.Network.Detach(ctx, taskID))
	}
	errs = append(errs, os.RemoveAll(r.taskDir(taskID)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove task %s: %w", taskID, err)
	}
	return nil
}

// deleteContainer kills and deletes the container's task, then the
// container and its snapshot.
func (r *Runtime) deleteContainer(ctx context.Context, ctr client.Container) error {
	if task, err := ctr.Task(ctx, nil); err == nil {
		if err := killAndDelete(ctx, task); err != nil {
			return err
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	err := ctr.Delete(ctx, client.WithSnapshotCleanup)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// killAndDelete kills every process of the task and deletes it once it has
// exited.
func killAndDelete(ctx context.Context, task client.Task) error {
	ch, err := task.Wait(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return err
	}
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// Purge deletes every container, task and snapshot of namespace shoal kept
// by the containerd under dataDir (starting it if needed), stops that
// containerd and unmounts whatever is left below dataDir/containerd. Tests
// and `shoal leave` call it so that nothing outlives the node.
func Purge(ctx context.Context, dataDir string) error {
	r, err := New(ctx, Config{DataDir: dataDir, Logger: "/bin/true"})
	if err != nil {
		return err
	}
	ctx = nsCtx(ctx)
	var errs []error
	ctrs, err := r.c.Containers(ctx)
	errs = append(errs, err)
	for _, ctr := range ctrs {
		errs = append(errs, r.deleteContainer(ctx, ctr))
	}
	// Container snapshots must go; image layers are removed as far as
	// they can be (a layer whose child was collected may still count
	// it until the next collection), and go with the data dir anyway.
	sn := r.c.SnapshotService(snapshotter)
	var active, layers []string
	errs = append(errs, sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindCommitted {
			layers = append(layers, info.Name)
		} else {
			active = append(active, info.Name)
		}
		return nil
	}))
	for _, k := range active {
		if err := sn.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove snapshot %s: %w", k, err))
		}
	}
	// Children before parents: retry the rest while any removal succeeds.
	for progress := true; progress && len(layers) > 0; {
		progress = false
		var left []string
		for _, k := range layers {
			if err := sn.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
				left = append(left, k)
			} else {
				progress = true
			}
		}
		layers = left
	}
	errs = append(errs, r.Close())
	killStragglers(r.p.base)
	errs = append(errs, UnmountUnder(r.p.base))
	return errors.Join(errs...)
}

// killStragglers kills the shims and task-loggers of the runtime under base
// that are still alive once containerd has deleted everything: a shim whose
// container was still stopping when the daemon went away can wait for a
// delete that never comes.
func killStragglers(base string) {
	stragglers := procs.Find(func(cmdline string) bool {
		return strings.Contains(cmdline, base+string(filepath.Separator)) &&
			(strings.Contains(cmdline, "containerd-shim") || strings.Contains(cmdline, " task-logger "))
	})
	for pid := range stragglers {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// validID refuses IDs that would escape the runtime's directory.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || filepath.Base(id) != id {
		return fmt.Errorf("%w: task ID %q cannot name a directory", runtime.ErrInvalidSpec, id)
	}
	return nil
}
