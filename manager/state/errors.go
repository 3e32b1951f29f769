package state

import "errors"

// Errors returned by the store. They are always wrapped with context, so test
// them with errors.Is.
var (
	// ErrNotLeader is returned by leader-only operations on a follower, and by
	// Propose on a follower that has no Forwarder.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader means no leader appeared within Config.LeaderWait: the
	// cluster has most likely lost its quorum.
	ErrNoLeader = errors.New("no raft leader")
	// ErrLeadershipLost means this node stopped being the leader while a
	// command was in flight, usually because it lost contact with a quorum:
	// the command may or may not have been applied. Re-read before retrying.
	ErrLeadershipLost = errors.New("raft leadership lost")
	// ErrVersionConflict means an UPDATE carried a version other than the
	// stored one: someone else wrote the object since it was read. Re-read
	// and retry.
	ErrVersionConflict = errors.New("version conflict")
	// ErrNotFound means an UPDATE or DELETE named an object that does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists means a CREATE named an object that already exists.
	ErrExists = errors.New("object already exists")
	// ErrInUse means a DELETE named an object that others still refer to
	// (a network a service is on), or a write referred to one that does
	// not exist.
	ErrInUse = errors.New("object in use")
	// ErrClosed is returned by operations on a closed Store.
	ErrClosed = errors.New("store closed")
	// ErrInvalidAction means a command is malformed: no actions, an unknown
	// kind, no target or one this build does not know, an empty id, or a
	// task status change that is not an UPDATE or carries no status.
	ErrInvalidAction = errors.New("invalid store action")
	// ErrLastVoter is returned by RemoveServer when the server is the only
	// voter left: removing it would leave a cluster that can never elect a
	// leader.
	ErrLastVoter = errors.New("cannot remove the last raft voter")
)
