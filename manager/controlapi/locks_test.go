package controlapi

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestObjectLocks(t *testing.T) {
	var l objectLocks
	ctx := context.Background()
	unlockA, waited, err := l.lock(ctx, []string{"node/b", "node/a", "node/a"})
	if err != nil || waited {
		t.Fatalf("first lock: waited %v, %v", waited, err)
	}
	unlockC, waited, err := l.lock(ctx, []string{"node/c"})
	if err != nil || waited {
		t.Fatalf("another object: waited %v, %v", waited, err)
	}
	unlockC()

	got := make(chan bool)
	go func() {
		unlock, waited, err := l.lock(ctx, []string{"node/a"})
		if err != nil {
			t.Errorf("second lock of node/a: %v", err)
		}
		unlock()
		got <- waited
	}()
	select {
	case <-got:
		t.Fatalf("node/a locked twice at once")
	case <-time.After(50 * time.Millisecond):
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := l.lock(cancelled, []string{"node/b"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock of a held object with a cancelled context: got %v", err)
	}

	unlockA()
	if waited := <-got; !waited {
		t.Fatalf("the second lock of node/a did not report that it waited")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.locks) != 0 {
		t.Fatalf("locks left after every unlock: %v", l.locks)
	}
}
