package membership

import (
	"encoding/json"
	"sync"

	"github.com/hashicorp/memberlist"
)

// memberlist's dead message does tell a graceful leave from a failure, but
// its event callbacks do not pass that on. So, like Serf, a leaving node first
// gossips a leave intent as a user message; a node that has seen the intent
// for the member's current boot records its later departure as StateLeft,
// otherwise as StateDead. Receivers re-gossip an intent the first time they
// see it, so it reaches every node even if the sender's packets do not.

// msgLeaveIntent is the first byte of a leave-intent user message. Other
// values are ignored, leaving room for later message types.
const msgLeaveIntent byte = 1

// leaveIntent is the body of a leave-intent message.
type leaveIntent struct {
	Node string `json:"node"`
	Boot string `json:"boot"`
}

func encodeLeaveIntent(li leaveIntent) []byte {
	body, _ := json.Marshal(li) // two strings: cannot fail
	return append([]byte{msgLeaveIntent}, body...)
}

// decodeLeaveIntent reports false for other message types and garbage.
func decodeLeaveIntent(msg []byte) (leaveIntent, bool) {
	var li leaveIntent
	if len(msg) < 2 || msg[0] != msgLeaveIntent {
		return li, false
	}
	if err := json.Unmarshal(msg[1:], &li); err != nil || li.Node == "" {
		return li, false
	}
	return li, true
}

// intentBroadcast queues a leave intent in a memberlist.TransmitLimitedQueue.
type intentBroadcast struct {
	node string
	msg  []byte
	// done, if not nil, is closed once the queue has sent the message as
	// many times as it will or dropped it for a newer one.
	done     chan struct{}
	doneOnce sync.Once
}

var _ memberlist.Broadcast = (*intentBroadcast)(nil)

func newIntentBroadcast(li leaveIntent, done chan struct{}) *intentBroadcast {
	return &intentBroadcast{node: li.Node, msg: encodeLeaveIntent(li), done: done}
}

// Invalidates reports whether b is an older intent for the same node.
func (ib *intentBroadcast) Invalidates(b memberlist.Broadcast) bool {
	other, ok := b.(*intentBroadcast)
	return ok && other.node == ib.node
}

func (ib *intentBroadcast) Message() []byte { return ib.msg }

func (ib *intentBroadcast) Finished() {
	if ib.done != nil {
		ib.doneOnce.Do(func() { close(ib.done) })
	}
}
