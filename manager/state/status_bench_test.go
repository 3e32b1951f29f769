package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// benchTaskSpec is a task spec of about the size the scale benchmark's
// services carry (1.2 KB marshalled).
func benchTaskSpec() *shoalpb.TaskSpec {
	env := make([]string, 24)
	for i := range env {
		env[i] = fmt.Sprintf("SETTING_%02d=some-configuration-value-%02d", i, i)
	}
	return &shoalpb.TaskSpec{
		Container: &shoalpb.ContainerSpec{
			Image:   "registry.example.com/team/web-frontend:1.24.3",
			Command: []string{"/usr/local/bin/web-frontend"},
			Args:    []string{"--listen=:8080", "--log-format=json", "--metrics=:9090"},
			Env:     env,
			Workdir: "/srv/web",
			Labels:  map[string]string{"team": "frontend", "tier": "web", "owner": "ops@example.com"},
			Mounts: []*shoalpb.Mount{
				{Type: shoalpb.MountType_MOUNT_TYPE_VOLUME, Source: "web-cache", Target: "/var/cache/web"},
				{Type: shoalpb.MountType_MOUNT_TYPE_BIND, Source: "/etc/web", Target: "/etc/web", ReadOnly: true},
			},
			StopGracePeriodMs: 10000,
		},
		Ports: []*shoalpb.PortConfig{{Protocol: "tcp", TargetPort: 8080}},
	}
}

// benchStore returns an FSM holding one service and n of its tasks, all
// written at index 1, and the next free index.
func benchStore(b *testing.B, n int) (*fsm, uint64) {
	b.Helper()
	f := testFSM()
	spec := benchTaskSpec()
	svc := &shoalpb.Service{Id: "svc", Spec: &shoalpb.ServiceSpec{Name: "web", Task: spec}}
	create := shoalpb.StoreActionKind_STORE_ACTION_CREATE
	index := uint64(1)
	if _, err := f.applyCommand(index, mustMarshal(b, &shoalpb.StoreAction{Kind: create, Target: &shoalpb.StoreAction_Service{Service: svc}})); err != nil {
		b.Fatal(err)
	}
	for start := 0; start < n; start += 1000 {
		index++
		var actions []*shoalpb.StoreAction
		for i := start; i < min(start+1000, n); i++ {
			actions = append(actions, taskAction(create, &shoalpb.Task{
				Id: benchTaskID(i), ServiceId: "svc", ServiceName: "web", Slot: uint64(i + 1),
				NodeId: fmt.Sprintf("node-%04d", i%1000), Spec: proto.Clone(spec).(*shoalpb.TaskSpec), SpecVersion: 1,
				DesiredState: shoalpb.TaskState_TASK_STATE_RUNNING,
				Status:       &shoalpb.TaskStatus{State: shoalpb.TaskState_TASK_STATE_ASSIGNED, Message: "assigned"},
				Meta:         &shoalpb.Meta{CreatedAt: timestamppb.Now(), UpdatedAt: timestamppb.Now()},
			}))
		}
		if _, err := f.applyCommand(index, mustMarshal(b, actions...)); err != nil {
			b.Fatal(err)
		}
	}
	return f, index + 1
}

func benchTaskID(i int) string { return fmt.Sprintf("task-%06d", i) }

func mustMarshal(b *testing.B, actions ...*shoalpb.StoreAction) []byte {
	b.Helper()
	data, err := proto.Marshal(&shoalpb.Command{Actions: actions})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkApplyTaskStatuses applies one Raft entry of 500 task status
// reports to a store of 100,000 tasks, as every manager does for each chunk
// the dispatcher writes. update is the whole task with its new status (an
// UPDATE, what the dispatcher wrote before), status a TaskStatusChange (what
// it writes now); the marshalled command's size is
// reported as cmd-bytes. Building the command is not timed: it happens on the
// leader only.
func BenchmarkApplyTaskStatuses(b *testing.B) {
	const tasks, chunk = 100_000, 500
	ways := map[string]func(stored *shoalpb.Task, status *shoalpb.TaskStatus) *shoalpb.StoreAction{
		"update": func(stored *shoalpb.Task, status *shoalpb.TaskStatus) *shoalpb.StoreAction {
			upd := proto.Clone(stored).(*shoalpb.Task)
			upd.Status = status
			return taskAction(shoalpb.StoreActionKind_STORE_ACTION_UPDATE, upd)
		},
		"status": func(stored *shoalpb.Task, status *shoalpb.TaskStatus) *shoalpb.StoreAction {
			return &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE,
				Target: &shoalpb.StoreAction_TaskStatus{TaskStatus: &shoalpb.TaskStatusChange{
					TaskId: stored.GetId(), Version: stored.GetMeta().GetVersion(), Status: status}}}
		},
	}
	for _, name := range []string{"update", "status"} {
		build := ways[name]
		b.Run(name, func(b *testing.B) {
			f, index := benchStore(b, tasks)
			now := time.Unix(1700000000, 0)
			var size int
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				status := &shoalpb.TaskStatus{State: shoalpb.TaskState(2 + i%4), Message: "started",
					Timestamp: timestamppb.New(now.Add(time.Duration(i) * time.Second)), Pid: int64(1000 + i)}
				actions := make([]*shoalpb.StoreAction, 0, chunk)
				f.view(func(tx ReadTx) {
					first := (i * chunk) % tasks
					for j := first; j < first+chunk; j++ {
						actions = append(actions, build(tx.Task(benchTaskID(j)), status))
					}
				})
				data := mustMarshal(b, actions...)
				size = len(data)
				b.StartTimer()
				if resp := f.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: data}})[0]; resp != nil {
					b.Fatalf("apply: %v", resp)
				}
				index++
			}
			b.StopTimer()
			b.ReportMetric(float64(size), "cmd-bytes")
		})
	}
}
