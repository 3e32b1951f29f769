package bench

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// noopRuntime is a runtime.Runtime whose tasks do nothing: Prepare succeeds,
// Start returns at once with the task running, and the task runs until Stop
// or Remove. The simulated workers of BenchmarkControlPlaneScale share one,
// so everything above the runtime (executor, agent, dispatcher, orchestrator,
// store) is the real code while the host's work per task is nil. Task IDs
// are unique in a cluster, so sharing it between workers mixes nothing up.
type noopRuntime struct {
	dir string // LogPath's directory; no log is ever written

	mu        sync.Mutex
	tasks     map[string]*noopHandle // started and not removed
	started   int                    // Start calls so far
	lastStart time.Time
}

var _ runtime.Runtime = (*noopRuntime)(nil)

func newNoopRuntime(dir string) *noopRuntime {
	return &noopRuntime{dir: dir, tasks: map[string]*noopHandle{}}
}

func (r *noopRuntime) Name() string { return "noop" }

func (r *noopRuntime) Prepare(context.Context, *shoalpb.Task) error { return nil }

func (r *noopRuntime) Start(_ context.Context, t *shoalpb.Task) (runtime.Handle, error) {
	h := &noopHandle{done: make(chan struct{})}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tasks[t.GetId()] = h
	r.started++
	r.lastStart = time.Now()
	return h, nil
}

// Adopt finds a task this runtime started; tasks do not outlive the process.
func (r *noopRuntime) Adopt(_ context.Context, taskID string, _ []byte) (runtime.Handle, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.tasks[taskID]; h != nil {
		return h, nil
	}
	return nil, runtime.ErrGone
}

func (r *noopRuntime) Remove(_ context.Context, taskID string) error {
	r.mu.Lock()
	h := r.tasks[taskID]
	delete(r.tasks, taskID)
	r.mu.Unlock()
	if h != nil {
		h.end()
	}
	return nil
}

func (r *noopRuntime) LogPath(taskID string) string {
	return filepath.Join(r.dir, taskID, "log.jsonl")
}

// counts returns how many tasks run (started and not removed), how many
// were started in all, and when the latest one was.
func (r *noopRuntime) counts() (running, started int, lastStart time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tasks), r.started, r.lastStart
}

// noopHandle is a task of noopRuntime: it runs until it is stopped.
type noopHandle struct {
	done chan struct{}
	once sync.Once
	at   atomic.Int64 // UnixNano of the end
}

func (h *noopHandle) end() {
	h.once.Do(func() {
		h.at.Store(time.Now().UnixNano())
		close(h.done)
	})
}

func (h *noopHandle) State() []byte { return nil }

func (h *noopHandle) Info() runtime.Info { return runtime.Info{} }

func (h *noopHandle) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	select {
	case <-h.done:
		return runtime.ExitStatus{Code: 0, At: time.Unix(0, h.at.Load())}, nil
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
}

func (h *noopHandle) Stop(context.Context, string, time.Duration) error {
	h.end()
	return nil
}
