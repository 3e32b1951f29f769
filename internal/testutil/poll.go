package testutil

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually and Poll retry.
const PollInterval = 50 * time.Millisecond

// Eventually calls fn every PollInterval until it returns nil. If timeout
// passes first, the test fails (tb.Fatalf) with fn's last error.
func Eventually(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	if err := Poll(timeout, fn); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Poll is Eventually for a test that goes on after a failure: it returns
// nil once fn does, or fn's last error once timeout has passed.
func Poll(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(PollInterval)
	}
}
