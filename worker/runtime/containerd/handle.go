package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"

	"shoal/internal/jsonfile"
	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// logDrain bounds how long the end of a task waits for its task-logger to
// write the last lines: a process that escaped the container could hold the
// output pipes open forever.
const logDrain = 3 * time.Second

// handle is one task's container, started or adopted by this Runtime. A
// monitor goroutine waits for the task's end, records it and releases the
// container; Wait and Stop only watch done.
type handle struct {
	r      *Runtime
	id     string
	pid    uint32
	ip     string
	health *shoalpb.HealthCheck
	stop   string // the container's stop signal

	ctx      context.Context    // the monitor's
	cancel   context.CancelFunc // stops the monitor
	done     chan struct{}      // closed when status is set
	doneOnce sync.Once
	ended    chan struct{} // closed when the monitor has returned
	status   runtime.ExitStatus

	execMu sync.Mutex
	execN  int
}

var (
	_ runtime.Handle      = (*handle)(nil)
	_ runtime.Execer      = (*handle)(nil)
	_ runtime.ConnCounter = (*handle)(nil)
)

// create makes the container and its task and starts it.
func (r *Runtime) create(ctx context.Context, t *shoalpb.Task, img client.Image, att *runtime.Attachment) (*handle, error) {
	id := t.GetId()
	ii, err := r.images.info(ctx, img)
	if err != nil {
		return nil, err
	}
	ic := ii.config
	cs, err := r.containerSpec(t, ic, att)
	if err != nil {
		return nil, err
	}
	ctr, err := r.c.NewContainer(ctx, id,
		client.WithImage(img),
		withSnapshot(id, ii),
		client.WithRuntime("io.containerd.runc.v2", r.runcOptions()),
		client.WithContainerLabels(cs.labels),
		client.WithNewSpec(cs.opts...),
	)
	if err != nil {
		if u := cs.user; u != "" && (strings.Contains(err.Error(), "passwd") || strings.Contains(err.Error(), "group")) {
			return nil, fmt.Errorf("%w: user %q is not in the image's /etc/passwd or /etc/group (%v); use a numeric uid[:gid] or a user the image defines", runtime.ErrInvalidSpec, u, err)
		}
		return nil, fmt.Errorf("create container for task %s: %w", id, err)
	}
	cleanup := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := r.deleteContainer(dctx, ctr); err != nil {
			r.log.Warn("delete the container of a failed start", "task", id, "err", err)
		}
	}
	task, err := ctr.NewTask(ctx, cio.BinaryIO(r.logger, map[string]string{"task-logger": r.LogPath(id)}))
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("create task %s: %w", id, startError(err))
	}
	if err := task.Start(ctx); err != nil {
		cleanup()
		return nil, fmt.Errorf("start task %s: %w", id, startError(err))
	}
	h := r.newHandle(id, task.Pid(), ic, cs.stopSignal, att)
	r.startMonitor(h, ctr)
	return h, nil
}

// startError shortens runc's long report of a command it could not run
// ("…: exec: \"/x\": stat /x: no such file or directory: unknown") to its
// end, an invalid spec: retrying the same image and command cannot help.
func startError(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "exec: "); i >= 0 {
		return fmt.Errorf("%w: %s", runtime.ErrInvalidSpec, strings.TrimSuffix(strings.TrimSpace(msg[i:]), ": unknown"))
	}
	return err
}

func (r *Runtime) newHandle(id string, pid uint32, ic *imageConfig, stop string, att *runtime.Attachment) *handle {
	h := &handle{r: r, id: id, pid: pid, stop: stop, done: make(chan struct{}), ended: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancel(r.ctx)
	if ic != nil {
		h.health = ic.healthcheck()
	}
	if att != nil {
		h.ip = att.IP
	}
	r.mu.Lock()
	r.handles[id] = h
	r.mu.Unlock()
	return h
}

// endedHandle is a task whose end was recorded before its container was
// deleted.
func endedHandle(r *Runtime, id string, st runtime.ExitStatus) *handle {
	h := &handle{r: r, id: id, done: make(chan struct{}), ended: make(chan struct{}), ctx: r.ctx, cancel: func() {}}
	h.setStatus(st)
	close(h.ended)
	return h
}

// watch adopts a container: the handle reads what it needs from the
// container and monitors its task.
func (r *Runtime) watch(ctx context.Context, ctr client.Container, saved *handleState) (*handle, error) {
	info, err := ctr.Info(ctx)
	if err != nil {
		return nil, err
	}
	var pid uint32
	if task, err := ctr.Task(ctx, nil); err == nil {
		pid = task.Pid()
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	if saved != nil && saved.PID != 0 && pid != 0 && saved.PID != pid {
		return nil, fmt.Errorf("%w: task %s was restarted by someone else (pid %d, expected %d)", runtime.ErrGone, ctr.ID(), pid, saved.PID)
	}
	var ic *imageConfig
	if img, err := ctr.Image(ctx); err == nil {
		ic, _ = readImageConfig(ctx, img)
	}
	var att *runtime.Attachment
	if r.cfg.Network != nil && info.Labels[labelIP] != "" {
		att = &runtime.Attachment{IP: info.Labels[labelIP]}
	}
	h := r.newHandle(ctr.ID(), pid, ic, info.Labels[labelStopSignal], att)
	r.startMonitor(h, ctr)
	return h, nil
}

func (r *Runtime) startMonitor(h *handle, ctr client.Container) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(h.ended)
		h.monitor(h.ctx, ctr)
	}()
}

// stopMonitor ends the monitor (Remove does the cleanup itself) and waits
// for it; a Wait still blocked learns that the task was removed.
func (h *handle) stopMonitor() {
	h.cancel()
	<-h.ended
	h.setStatus(runtime.ExitStatus{Code: -1, Signal: "SIGKILL", Err: "task removed while it ran", At: time.Now()})
}

// setStatus publishes the task's end; only the first call counts.
func (h *handle) setStatus(st runtime.ExitStatus) {
	h.doneOnce.Do(func() {
		h.status = st
		close(h.done)
	})
}

// monitor waits for the task's end across containerd restarts, then
// records it, deletes the task and container and detaches the network,
// in that order, so that Wait returns only once the address is free.
func (h *handle) monitor(ctx context.Context, ctr client.Container) {
	backoff := 50 * time.Millisecond
	retry := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
			backoff = min(backoff*2, time.Second)
			return true
		}
	}
	for {
		task, err := ctr.Task(ctx, nil)
		if errdefs.IsNotFound(err) {
			st, ok := h.recorded()
			if !ok {
				st = runtime.ExitStatus{Code: -1, Err: fmt.Sprintf("container %s has no task and no recorded exit status: it was deleted outside shoal", h.id), At: time.Now()}
			}
			h.finish(ctx, ctr, st)
			return
		}
		if err != nil {
			if !retry() {
				return
			}
			continue
		}
		ch, err := task.Wait(ctx)
		if err != nil {
			if !retry() {
				return
			}
			continue
		}
		var es client.ExitStatus
		select {
		case es = <-ch:
		case <-ctx.Done():
			return
		}
		if es.Error() != nil {
			// containerd went away (restart); wait for the new one.
			if !retry() {
				return
			}
			continue
		}
		st := h.exitStatus(ctr, es)
		if err := jsonfile.Write(filepath.Join(h.r.taskDir(h.id), exitFile), st, 0o640); err != nil {
			h.r.log.Warn("record task end", "task", h.id, "err", err)
		}
		// The shim keeps its ends of the output pipes until the task is
		// deleted; only then does the task-logger read their end.
		if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			h.r.log.Warn("delete ended task", "task", h.id, "err", err)
		}
		h.waitLogger()
		h.finish(ctx, ctr, st)
		return
	}
}

func (h *handle) recorded() (runtime.ExitStatus, bool) {
	var st runtime.ExitStatus
	ok := jsonfile.Read(filepath.Join(h.r.taskDir(h.id), exitFile), &st) == nil
	return st, ok
}

// finish deletes the container and its snapshot, detaches the network and
// publishes st.
func (h *handle) finish(ctx context.Context, ctr client.Container, st runtime.ExitStatus) {
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		h.r.log.Warn("delete ended container", "task", h.id, "err", err)
	}
	if h.r.cfg.Network != nil {
		if err := h.r.cfg.Network.Detach(ctx, h.id); err != nil {
			h.r.log.Warn("detach ended task", "task", h.id, "err", err)
		}
	}
	h.setStatus(st)
}

// exitStatus reads the task's end, and whether the memory cgroup killed it,
// which must happen before the task (and its cgroup) is deleted.
func (h *handle) exitStatus(ctr client.Container, es client.ExitStatus) runtime.ExitStatus {
	code := int(es.ExitCode())
	st := runtime.ExitStatus{Code: code, At: es.ExitTime()}
	if st.At.IsZero() || st.At.Year() < 2000 {
		st.At = time.Now()
	}
	if code > 128 && code <= 128+64 {
		st.Signal = runtime.SignalName(syscall.Signal(code - 128))
	}
	if oomKills(h.id) > 0 {
		st.OOMKilled = true
		limit := "unknown"
		if info, err := ctr.Info(h.r.ctx); err == nil {
			if n, err := strconv.ParseInt(info.Labels[labelMemory], 10, 64); err == nil && n > 0 {
				limit = strconv.FormatInt(n>>20, 10)
			}
		}
		st.Err = fmt.Sprintf("container killed: out of memory (memory limit %s MiB)", limit)
	}
	return st
}

// oomKills is the oom_kill counter of the task's memory cgroup: v1's
// memory.oom_control, or v2's memory.events on a unified host.
func oomKills(id string) int {
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup/memory", cgroupParent, id, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", cgroupParent, id, "memory.events"),
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n
			}
		}
	}
	return 0
}

// waitLogger waits, up to logDrain, for the task-logger to release its lock,
// which it does after writing the last line of output.
func (h *handle) waitLogger() {
	path := filepath.Join(h.r.taskDir(h.id), loggerLock)
	deadline := time.Now().Add(logDrain)
	for {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		if err == nil || time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *handle) State() []byte {
	b, _ := json.Marshal(handleState{ContainerID: h.id, PID: h.pid})
	return b
}

func (h *handle) Info() runtime.Info {
	return runtime.Info{PID: int64(h.pid), ContainerID: h.id, IP: h.ip, Healthcheck: h.health}
}

// Wait returns the task's end once the monitor has recorded it.
func (h *handle) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	select {
	case <-h.done:
		return h.status, nil
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
}

// Stop signals the container's init, then after grace kills every process
// of the container.
func (h *handle) Stop(ctx context.Context, signal string, grace time.Duration) error {
	if signal == "" {
		signal = h.stop
	}
	sig, err := runtime.ParseSignal(signal)
	if err != nil {
		return err
	}
	select {
	case <-h.done:
		return nil
	default:
	}
	ctx = nsCtx(ctx)
	if err := h.kill(ctx, sig, false); err != nil {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if err := h.kill(ctx, syscall.SIGKILL, true); err != nil {
		return err
	}
	_, err = h.Wait(ctx)
	return err
}

// InboundConns counts the task's inbound connections: in its network
// namespace, which a task with an address has to itself (spec.go), all of
// them; in the host's, those its processes hold.
func (h *handle) InboundConns(ctx context.Context) (int, error) {
	select {
	case <-h.done:
		return 0, nil
	default:
	}
	if h.ip != "" {
		return runtime.InboundConnsInNetns(int(h.pid))
	}
	ctx = nsCtx(ctx)
	task, err := h.task(ctx)
	if err != nil {
		return 0, fmt.Errorf("count the connections of task %s: %w", h.id, err)
	}
	procs, err := task.Pids(ctx)
	if err != nil {
		return 0, fmt.Errorf("count the connections of task %s: %w", h.id, err)
	}
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = int(p.Pid)
	}
	return runtime.InboundConnsOf(pids)
}

func (h *handle) kill(ctx context.Context, sig syscall.Signal, all bool) error {
	var opts []client.KillOpts
	if all {
		opts = append(opts, client.WithKillAll)
	}
	// containerd may be restarting: retry what is not a definite answer.
	ctx2, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		task, err := h.task(ctx2)
		if err == nil {
			err = task.Kill(ctx2, sig, opts...)
		}
		switch {
		case err == nil, errdefs.IsNotFound(err), errdefs.IsFailedPrecondition(err):
			return nil
		case errdefs.IsInvalidArgument(err):
			return fmt.Errorf("signal task %s: %w", h.id, err)
		}
		select {
		case <-h.done:
			return nil
		case <-ctx2.Done():
			return fmt.Errorf("signal task %s: %w", h.id, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (h *handle) task(ctx context.Context) (client.Task, error) {
	ctr, err := h.r.c.LoadContainer(ctx, h.id)
	if err != nil {
		return nil, err
	}
	return ctr.Task(ctx, nil)
}

// Exec runs argv inside the container with the container's environment,
// user and working directory, and returns its exit code and output.
func (h *handle) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	if len(argv) == 0 {
		return -1, nil, errors.New("exec: no command")
	}
	ctx = nsCtx(ctx)
	ctr, err := h.r.c.LoadContainer(ctx, h.id)
	if err != nil {
		return -1, nil, fmt.Errorf("exec in task %s: %w", h.id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return -1, nil, fmt.Errorf("exec in task %s: %w", h.id, err)
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return -1, nil, err
	}
	pspec := *spec.Process
	pspec.Args = argv
	pspec.Terminal = false
	h.execMu.Lock()
	h.execN++
	execID := fmt.Sprintf("exec-%d-%d", time.Now().UnixNano(), h.execN)
	h.execMu.Unlock()
	out := &runtime.ExecOutput{}
	p, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(cio.WithStreams(nil, out, out), cio.WithFIFODir(h.r.p.fifos())))
	if err != nil {
		return -1, nil, fmt.Errorf("exec in task %s: %w", h.id, err)
	}
	// Deleted with a context that outlives ctx so no exec process leaks.
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = p.Delete(dctx, client.WithProcessKill)
	}()
	ch, err := p.Wait(ctx)
	if err != nil {
		return -1, nil, err
	}
	if err := p.Start(ctx); err != nil {
		return -1, nil, fmt.Errorf("exec %q in task %s: %w", argv[0], h.id, startError(err))
	}
	select {
	case es := <-ch:
		// Delete closes the IO after the copy ends; read the output after.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_, _ = p.Delete(dctx)
		cancel()
		return int(es.ExitCode()), out.Bytes(), es.Error()
	case <-ctx.Done():
		return -1, out.Bytes(), ctx.Err()
	}
}
