package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
	"shoal/worker/runtime/process"
)

// testTimeout bounds every wait; the tasks here take milliseconds.
const testTimeout = 20 * time.Second

// node is an Executor running on a data dir, with everything it reported.
type node struct {
	t       *testing.T
	dataDir string
	e       *Executor
	stop    func()

	mu     sync.Mutex
	latest map[string]*shoalpb.TaskStatus
	states map[string][]shoalpb.TaskState // every reported state, in order
}

// startNode runs an Executor with the process runtime on dataDir ("" for a
// new one) until the test ends or stop is called.
func startNode(t *testing.T, dataDir string) *node {
	t.Helper()
	return startNodeWithClock(t, dataDir, nil)
}

// startNodeWithClock is startNode with the health checks on clk (nil: the
// real clock).
func startNodeWithClock(t *testing.T, dataDir string, clk clock) *node {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
		t.Cleanup(func() { killTasks(filepath.Join(dataDir, TasksDir)) })
	}
	rt, err := process.New(process.Config{Dir: filepath.Join(dataDir, TasksDir), Shim: testutil.Binary(t)})
	if err != nil {
		t.Fatalf("process.New: %v", err)
	}
	n := &node{t: t, dataDir: dataDir, latest: map[string]*shoalpb.TaskStatus{}, states: map[string][]shoalpb.TaskState{}}
	n.e = New(Config{DataDir: dataDir, NodeID: "node-1", Runtime: rt, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if clk != nil {
		n.e.clock = clk
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- n.e.Run(ctx) }()
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for {
			select {
			case <-ctx.Done():
				return
			case batch := <-n.e.Updates():
				n.mu.Lock()
				for _, u := range batch {
					n.latest[u.TaskId] = u.Status
					n.states[u.TaskId] = append(n.states[u.TaskId], u.Status.State)
				}
				n.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
			<-collected
		})
	}
	t.Cleanup(n.stop)
	return n
}

// killTasks kills every task process and shim left under dir and waits
// for them to go, so a failed test leaves nothing running and nothing
// writes into its temporary dirs.
func killTasks(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*", "pid"))
	var pids []int64
	for _, f := range files {
		var info struct {
			PID     int `json:"pid"`
			ShimPID int `json:"shim_pid"`
		}
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &info) != nil || info.PID <= 0 {
			continue
		}
		if !processGone(int64(info.ShimPID)) {
			_ = syscall.Kill(info.ShimPID, syscall.SIGKILL)
			pids = append(pids, int64(info.ShimPID))
		}
		if !processGone(int64(info.PID)) {
			_ = syscall.Kill(-info.PID, syscall.SIGKILL)
			pids = append(pids, int64(info.PID))
		}
	}
	deadline := time.Now().Add(testTimeout)
	for _, pid := range pids {
		for !processGone(pid) && time.Now().Before(deadline) {
			time.Sleep(testutil.PollInterval)
		}
	}
}

// await polls until the task's latest reported status satisfies ok.
func (n *node) await(id string, what string, ok func(*shoalpb.TaskStatus) bool) *shoalpb.TaskStatus {
	n.t.Helper()
	var got *shoalpb.TaskStatus
	testutil.Eventually(n.t, testTimeout, func() error {
		n.mu.Lock()
		got = n.latest[id]
		n.mu.Unlock()
		if got != nil && ok(got) {
			return nil
		}
		return fmt.Errorf("task %s: status %v, want %s", id, got, what)
	})
	return got
}

// awaitState polls until the task reports state.
func (n *node) awaitState(id string, state shoalpb.TaskState) *shoalpb.TaskStatus {
	n.t.Helper()
	return n.await(id, state.String(), func(st *shoalpb.TaskStatus) bool { return st.State == state })
}

func (n *node) reported(id string) []shoalpb.TaskState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]shoalpb.TaskState(nil), n.states[id]...)
}

func (n *node) taskDir(id string) string { return filepath.Join(n.dataDir, TasksDir, id) }

// awaitForgotten polls until the executor dropped the task and its files.
func (n *node) awaitForgotten(id string) {
	n.t.Helper()
	testutil.Eventually(n.t, testTimeout, func() error {
		if _, known := n.e.task(id); known {
			return fmt.Errorf("task %s is still known", id)
		}
		if _, err := os.Stat(n.taskDir(id)); !os.IsNotExist(err) {
			return fmt.Errorf("task dir of %s: %v", id, err)
		}
		return nil
	})
}

func newTask(id string, argv ...string) *shoalpb.Task {
	return &shoalpb.Task{
		Id: id, ServiceId: "svc-id", ServiceName: "svc", Slot: 1, NodeId: "node-1",
		DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
		Status:       &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_ASSIGNED},
		Spec:         &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "busybox", Command: argv}},
	}
}

// withDesired is a copy of t with another desired state.
func withDesired(t *shoalpb.Task, s shoalpb.TaskState) *shoalpb.Task {
	c := proto.Clone(t).(*shoalpb.Task)
	c.DesiredState = s
	return c
}

func fullSet(tasks ...*shoalpb.Task) *shoalpb.AssignmentsMessage {
	return &shoalpb.AssignmentsMessage{Complete: true, Update: tasks}
}

func incrementOf(tasks ...*shoalpb.Task) *shoalpb.AssignmentsMessage {
	return &shoalpb.AssignmentsMessage{Update: tasks}
}

// processGone reports whether pid has exited (or is a zombie).
func processGone(pid int64) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}
