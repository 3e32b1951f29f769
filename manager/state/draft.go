package state

import (
	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// Draft is a scratch write transaction over the current state, for a writer
// whose actions depend on each other: a stack's services name the networks
// created in the same write, and each new service's VIP must differ from
// the one taken just before it. The writer applies each action to the draft
// as soon as it is built and reads the outcome back through the draft's
// ReadTx; the FSM's own checks (unique names, VIPs and subnets, networks
// that exist) refuse a bad action here, before anything is proposed.
// Nothing is ever committed from a draft: the collected actions are
// proposed as one command, and the FSM checks them again against the state
// they meet then.
type Draft struct {
	readTx
	actions []*shoalpb.StoreAction
	index   uint64
}

// Apply checks a against the draft and applies it. The draft keeps a copy:
// a stays as built (the FSM stamps versions on what it applies).
func (d *Draft) Apply(a *shoalpb.StoreAction) error {
	if _, err := applyAction(d.txn, d.index, proto.Clone(a).(*shoalpb.StoreAction)); err != nil {
		return err
	}
	d.actions = append(d.actions, a)
	return nil
}

// Draft runs build on a draft of the current state and returns the actions
// it applied, in order; an error from build is returned as is.
func (s *Store) Draft(build func(d *Draft) error) ([]*shoalpb.StoreAction, error) {
	// A write transaction on a snapshot of the database: the FSM's own
	// writer lock is not held, so commits go on while build runs.
	txn := s.fsm.db.Load().Snapshot().Txn(true)
	defer txn.Abort()
	d := &Draft{readTx: readTx{txn: txn}, index: s.AppliedIndex() + 1}
	if err := build(d); err != nil {
		return nil, err
	}
	return d.actions, nil
}
