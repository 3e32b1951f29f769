package exec

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"shoal/internal/testutil"
)

// fakeClock is a clock that moves only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{at: f.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires the waiters that are due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- f.now
	}
	f.waiters = kept
}

// awaitWaiters polls until n callers wait on the clock: the prober's loops
// have handled their last probe and wait for the next interval.
func (f *fakeClock) awaitWaiters(t *testing.T, n int) {
	t.Helper()
	testutil.Eventually(t, testTimeout, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.waiters) != n {
			return fmt.Errorf("%d waiters on the clock, want %d", len(f.waiters), n)
		}
		return nil
	})
}
