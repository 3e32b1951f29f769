package ca

import (
	"crypto/x509"
	"math/rand/v2"
	"time"
)

// RenewAt returns when a node should renew leaf: a uniformly random moment
// between 50% and 80% of its lifetime (NotBefore to NotAfter), so that nodes
// issued together do not all renew at once and a failed renewal still has
// time to be retried. rnd is the random source (math/rand/v2), which tests
// seed; nil uses the global source. A certificate with no lifetime returns
// NotBefore, i.e. renew now.
func RenewAt(leaf *x509.Certificate, rnd *rand.Rand) time.Time {
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	if lifetime <= 0 {
		return leaf.NotBefore
	}
	start := lifetime / 2
	// floor(lifetime*4/5), computed so that it cannot overflow.
	end := lifetime/5*4 + lifetime%5*4/5
	window := end - start
	var offset time.Duration
	if rnd != nil {
		offset = time.Duration(rnd.Int64N(int64(window) + 1))
	} else {
		offset = time.Duration(rand.Int64N(int64(window) + 1))
	}
	return leaf.NotBefore.Add(start + offset)
}
