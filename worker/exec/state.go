package exec

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// recordFile is the executor's file in a task's directory; the runtime's
// files sit beside it.
const recordFile = "task.json"

// record is what the executor keeps of a task across agent restarts.
type record struct {
	Task    *shoalpb.Task
	Runtime string // the runtime that started the task, "" before that
	Handle  []byte // runtime.Handle.State, for Adopt
	Forget  bool   // being stopped and removed
}

// recordJSON is a record on disk. The task is protobuf-encoded: a record is
// written at several steps of every task, and the text form cost several
// times as much to write.
type recordJSON struct {
	Task    []byte `json:"task"`
	Runtime string `json:"runtime,omitempty"`
	Handle  []byte `json:"handle,omitempty"`
	Forget  bool   `json:"forget,omitempty"`
}

// encodeRecord returns rec as written to disk.
func encodeRecord(rec *record) ([]byte, error) {
	task, err := proto.Marshal(rec.Task)
	if err != nil {
		return nil, err
	}
	return json.Marshal(recordJSON{Task: task, Runtime: rec.Runtime, Handle: rec.Handle, Forget: rec.Forget})
}

// writeRecord writes an encoded record atomically to
// <dir>/<task-id>/task.json, creating the task's directory first unless
// exists says it is there. Writes of one task's record must not overlap.
//
// The record is not synced to the disk: it must outlive the agent, whose
// crash leaves the page cache intact, not the machine, whose crash ends the
// tasks it describes. A record lost or cut short by a power failure reads as
// no record (skipped, and logged), and the task it described is reported
// lost when the leader assigns it again.
func writeRecord(dir, taskID string, data []byte, exists bool) error {
	taskDir := filepath.Join(dir, taskID)
	if !exists {
		if err := os.MkdirAll(taskDir, 0o750); err != nil {
			return err
		}
	}
	tmp := filepath.Join(taskDir, "."+recordFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(taskDir, recordFile))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// deleteRecord deletes the task's directory, whatever the runtime left in it.
func deleteRecord(dir, taskID string) error {
	return os.RemoveAll(filepath.Join(dir, taskID))
}

// readRecord reads <dir>/<task-id>/task.json.
func readRecord(dir, taskID string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, taskID, recordFile))
	if err != nil {
		return nil, err
	}
	var rj recordJSON
	if err := json.Unmarshal(b, &rj); err != nil {
		return nil, fmt.Errorf("%s: %w", recordFile, err)
	}
	task := &shoalpb.Task{}
	if err := proto.Unmarshal(rj.Task, task); err != nil {
		return nil, fmt.Errorf("%s: task: %w", recordFile, err)
	}
	if task.Id != taskID {
		return nil, fmt.Errorf("%s: holds task %q", recordFile, task.Id)
	}
	return &record{Task: task, Runtime: rj.Runtime, Handle: rj.Handle, Forget: rj.Forget}, nil
}

// load makes controllers for the tasks an earlier agent left. A directory
// without a readable record is left alone and logged: it is not ours to
// delete on a guess.
func (e *Executor) load() []*controller {
	entries, err := os.ReadDir(e.dir)
	if err != nil {
		if !os.IsNotExist(err) {
			e.log.Error("read task records", "dir", e.dir, "err", err)
		}
		return nil
	}
	var out []*controller
	for _, ent := range entries {
		if !ent.IsDir() {
			continue
		}
		rec, err := readRecord(e.dir, ent.Name())
		if err != nil {
			e.log.Warn("skip task directory without a usable record", "dir", filepath.Join(e.dir, ent.Name()), "err", err)
			continue
		}
		if rec.Task.Status == nil {
			rec.Task.Status = newStatus(assigned, "assigned")
		}
		c := newController(e, rec.Task, rec)
		out = append(out, c)
	}
	return out
}
