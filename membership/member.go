package membership

import "fmt"

// Roles a node advertises in Meta.Role.
const (
	RoleManager = "manager"
	RoleWorker  = "worker"
)

// Meta is what a node advertises to every other node. It travels in every
// memberlist alive message, so it is kept small: the encoded form must fit in
// memberlist.MetaMaxSize (512) bytes, and New and UpdateMeta refuse a larger
// one with ErrMetaTooLarge.
type Meta struct {
	// Role is RoleManager or RoleWorker. It is the node's own claim; Raft
	// holds the authoritative answer.
	Role string
	// APIAddr is the node's gRPC API address, "IP:PORT". Empty when the node
	// serves no API (workers).
	APIAddr string
}

// State is a member's liveness as seen by the local node.
type State int

const (
	// StateAlive: the member answers probes or has refuted a suspicion.
	StateAlive State = iota
	// StateSuspect is part of the vocabulary but is never reported: memberlist
	// v0.6.0 gives no notification when it starts suspecting a node, so a
	// suspected member stays StateAlive until it is declared dead.
	StateSuspect
	// StateDead: memberlist's failure detector declared the member dead
	// (crash, kill, network partition).
	StateDead
	// StateLeft: the member announced a graceful Leave.
	StateLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Member is one node of the gossip cluster, as seen by the local node.
type Member struct {
	// NodeID is the node's memberlist name, the shoal node id.
	NodeID string
	// Addr is the node's gossip address, "IP:PORT".
	Addr string
	// Meta is the last Meta the node advertised.
	Meta Meta
	// State is the node's liveness.
	State State
}

// EventKind says what changed about a member.
type EventKind int

const (
	// EventJoin: a member became alive, for the first time or after having
	// been dead or left (a restart or a refuted failure).
	EventJoin EventKind = iota
	// EventLeave: a member died (Member.State == StateDead) or left
	// gracefully (StateLeft).
	EventLeave
	// EventUpdate: an alive member advertised a new Meta.
	EventUpdate
)

// String returns "join", "leave" or "update".
func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventUpdate:
		return "update"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports one change to the member table. Member is a snapshot taken
// when the change happened.
type Event struct {
	Kind   EventKind
	Member Member
}
