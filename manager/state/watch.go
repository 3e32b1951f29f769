package state

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"
)

// watchBuffer is how many events a watcher may fall behind before its channel
// is closed. One Raft batch can carry thousands of task changes (a scale-up,
// a wave of status reports), and a watcher that falls behind must re-read
// the whole store, so it is large: 65,536 events, about 2.5 MB per watcher.
const watchBuffer = 1 << 16

// EventKind says what happened to an object.
type EventKind int

const (
	// EventCreate: the object was created; Object is the new object.
	EventCreate EventKind = iota + 1
	// EventUpdate: the object was replaced; Object is the new version.
	EventUpdate
	// EventDelete: the object was removed; Object is the object as it was
	// last stored.
	EventDelete
	// EventReset: the whole store was replaced from a snapshot; Object is nil.
	// Watchers must re-read everything they track.
	EventReset
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventCreate:
		return "create"
	case EventUpdate:
		return "update"
	case EventDelete:
		return "delete"
	case EventReset:
		return "reset"
	}
	return "unknown"
}

// Event is one change to the store, published after it committed. Object is
// shared with the store and must not be modified.
type Event struct {
	Kind EventKind
	// Object is a *shoalpb.Cluster, *shoalpb.Node, *shoalpb.Service or
	// *shoalpb.Task (nil for EventReset).
	Object proto.Message
	// Index is the Raft index of the write (of the snapshot for EventReset).
	Index uint64
}

// broker fans committed events out to watchers without ever blocking the
// publisher: a watcher whose buffer is full is dropped (its channel closed).
type broker struct {
	log    *slog.Logger
	mu     sync.Mutex
	subs   map[*watcher]struct{}
	closed bool
}

type watcher struct {
	ch   chan Event
	stop func() bool // unregisters the context callback
}

func newBroker(log *slog.Logger) *broker {
	return &broker{log: log, subs: map[*watcher]struct{}{}}
}

// subscribe returns a channel of events published from now on. It is closed
// when ctx ends, when the watcher falls watchBuffer events behind, or when the
// broker closes (at once if it already is).
func (b *broker) subscribe(ctx context.Context) <-chan Event {
	w := &watcher{ch: make(chan Event, watchBuffer)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || ctx.Err() != nil {
		close(w.ch)
		return w.ch
	}
	b.subs[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.dropLocked(w)
	})
	return w.ch
}

// publish hands events, in order, to every watcher.
func (b *broker) publish(events ...Event) {
	if len(events) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.subs {
	send:
		for _, ev := range events {
			select {
			case w.ch <- ev:
			default:
				b.log.Warn("store watcher fell behind; closing its channel", "buffer", watchBuffer)
				b.dropLocked(w)
				break send
			}
		}
	}
}

// close closes every watcher; later subscriptions get a closed channel.
func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for w := range b.subs {
		b.dropLocked(w)
	}
}

func (b *broker) dropLocked(w *watcher) {
	if _, ok := b.subs[w]; !ok {
		return
	}
	delete(b.subs, w)
	w.stop()
	close(w.ch)
}
