package state

import (
	"encoding/binary"
	"fmt"
	"io"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// Snapshot stream layout: one format byte, the FSM's applied index (8 bytes,
// big endian), then a deterministically marshalled shoalpb.Snapshot. The
// index lets Restore set AppliedIndex, which WaitApplied relies on; raft does
// not tell the FSM which snapshot it restores.
const (
	snapshotFormat     = 1
	snapshotHeaderSize = 1 + 8
)

// Snapshot captures the store for raft. It only takes a memdb read
// transaction (an immutable radix tree snapshot), so it returns at once;
// marshalling and I/O happen in Persist, concurrently with Apply.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	index, _ := f.applied.get()
	return &fsmSnapshot{txn: f.db.Load().Txn(false), index: index}, nil
}

// Restore replaces the whole store with a snapshot written by Persist, then
// publishes an EventReset.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	index, db, err := decodeSnapshot(data)
	if err != nil {
		return err
	}
	f.db.Store(db)
	f.applied.set(index)
	f.log.Info("store restored from snapshot", "index", index)
	f.events.publish(Event{Kind: EventReset, Index: index})
	return nil
}

// decodeSnapshot builds a fresh database from a Persist stream.
func decodeSnapshot(data []byte) (uint64, *memdb.MemDB, error) {
	if len(data) < snapshotHeaderSize || data[0] != snapshotFormat {
		return 0, nil, fmt.Errorf("snapshot: unknown format (%d bytes)", len(data))
	}
	index := binary.BigEndian.Uint64(data[1:snapshotHeaderSize])
	var snap shoalpb.Snapshot
	if err := proto.Unmarshal(data[snapshotHeaderSize:], &snap); err != nil {
		return 0, nil, fmt.Errorf("snapshot: decode: %w", err)
	}
	db := newDB()
	txn := db.Txn(true)
	defer txn.Abort()
	for _, t := range tables {
		for _, o := range t.load(&snap) {
			if o.GetId() == "" {
				return 0, nil, fmt.Errorf("snapshot: %s object with an empty id", t.name)
			}
			if err := txn.Insert(t.name, o); err != nil {
				return 0, nil, fmt.Errorf("snapshot: insert %s %q: %w", t.name, o.GetId(), err)
			}
		}
	}
	txn.Commit()
	return index, db, nil
}

// fsmSnapshot is a point-in-time view of the store waiting to be persisted.
type fsmSnapshot struct {
	txn   *memdb.Txn
	index uint64
}

// Persist writes the snapshot to sink and closes it, or cancels it on error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	data, err := s.encode()
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// encode returns the snapshot stream. Objects are listed table by table in id
// order and marshalled deterministically, so equal stores give equal bytes.
func (s *fsmSnapshot) encode() ([]byte, error) {
	var snap shoalpb.Snapshot
	for _, t := range tables {
		it, err := s.txn.Get(t.name, "id")
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", t.name, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			t.dump(&snap, raw.(object))
		}
	}
	header := make([]byte, snapshotHeaderSize)
	header[0] = snapshotFormat
	binary.BigEndian.PutUint64(header[1:], s.index)
	return proto.MarshalOptions{Deterministic: true}.MarshalAppend(header, &snap)
}

// Release ends the read transaction.
func (s *fsmSnapshot) Release() { s.txn.Abort() }
