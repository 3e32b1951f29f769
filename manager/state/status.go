package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	shoalpb "shoal/proto"
)

// applyTaskStatus applies a TaskStatusChange: the UPDATE of a task's status
// without the rest of the task. Its checks, its errors, the task it stores
// and the event it publishes are those of an UPDATE carrying the stored task
// with the new status (the dispatcher's status reports wrote that before),
// but the Raft entry no longer carries the task's spec, and the stored task
// keeps sharing its spec instead of having it decoded and compared again.
func applyTaskStatus(txn *memdb.Txn, index uint64, kind shoalpb.StoreActionKind, c *shoalpb.TaskStatusChange) (Event, error) {
	id := c.GetTaskId()
	switch {
	case kind != shoalpb.StoreActionKind_STORE_ACTION_UPDATE:
		return Event{}, fmt.Errorf("%w: %s of a task status %q: only UPDATE changes a task status", ErrInvalidAction, kind, id)
	case id == "":
		return Event{}, fmt.Errorf("%w: %s task status: empty id", ErrInvalidAction, kind)
	case c.GetStatus() == nil:
		return Event{}, fmt.Errorf("%w: %s task status %q: no status", ErrInvalidAction, kind, id)
	}
	raw, err := txn.First(tableTasks, "id", id)
	if err != nil {
		return Event{}, fmt.Errorf("read %s %q: %w", tableTasks, id, err)
	}
	stored, _ := raw.(*shoalpb.Task)
	if stored == nil {
		return Event{}, fmt.Errorf("%w: %s %q", ErrNotFound, tableTasks, id)
	}
	if have, want := c.GetVersion(), stored.GetMeta().GetVersion(); have != want {
		return Event{}, fmt.Errorf("%w: %s %q: status change read version %d, stored version is %d",
			ErrVersionConflict, tableTasks, id, have, want)
	}
	task := withStatus(stored, c.Status, index)
	if err := txn.Insert(tableTasks, task); err != nil {
		return Event{}, fmt.Errorf("write %s %q: %w", tableTasks, id, err)
	}
	return Event{Kind: EventUpdate, Object: task, Index: index}, nil
}

// withStatus returns a new task equal to stored but for its status and its
// meta's version. It shares every other field with stored (the spec in
// particular): stored objects are never modified, so they can share parts.
// Every field of Task must be copied here (TestWithStatusCopiesEveryField).
func withStatus(stored *shoalpb.Task, status *shoalpb.TaskStatus, version uint64) *shoalpb.Task {
	meta := stored.GetMeta()
	t := &shoalpb.Task{
		Id: stored.Id,
		Meta: &shoalpb.Meta{
			Version:   version,
			CreatedAt: meta.GetCreatedAt(),
			UpdatedAt: meta.GetUpdatedAt(),
		},
		ServiceId:    stored.ServiceId,
		ServiceName:  stored.ServiceName,
		Slot:         stored.Slot,
		NodeId:       stored.NodeId,
		Spec:         stored.Spec,
		SpecVersion:  stored.SpecVersion,
		DesiredState: stored.DesiredState,
		Status:       status,
		JobIteration: stored.JobIteration,
		Address:      stored.Address,
		Networks:     stored.Networks,
	}
	if unknown := stored.ProtoReflect().GetUnknown(); len(unknown) > 0 {
		t.ProtoReflect().SetUnknown(unknown)
	}
	if meta != nil {
		if unknown := meta.ProtoReflect().GetUnknown(); len(unknown) > 0 {
			t.Meta.ProtoReflect().SetUnknown(unknown)
		}
	}
	return t
}
