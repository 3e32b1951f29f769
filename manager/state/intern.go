package state

import (
	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// shareTaskSpec makes a task written to the store share its service's task
// spec when the two are equal, instead of holding a copy of its own: every
// task of a service is made from the same spec, so a hundred thousand tasks
// keep one instead of a hundred thousand (about half of a task's memory).
// The reconciler compares each task's spec with its service's on every pass;
// shared, the comparison stops at the pointer. Stored objects are never
// modified, so sharing is safe; the content written is the same.
func shareTaskSpec(txn *memdb.Txn, obj object) {
	t, ok := obj.(*shoalpb.Task)
	if !ok || t.GetSpec() == nil {
		return
	}
	raw, err := txn.First(tableServices, "id", t.GetServiceId())
	if err != nil || raw == nil {
		return
	}
	if spec := raw.(*shoalpb.Service).GetSpec().GetTask(); spec != nil && proto.Equal(t.Spec, spec) {
		t.Spec = spec
	}
}
