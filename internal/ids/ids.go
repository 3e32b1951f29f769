// Package ids makes the random identifiers of clusters, nodes, services and
// tasks.
package ids

import (
	"crypto/rand"
	"crypto/sha256"
)

const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// New returns 25 random lowercase alphanumerics, like Docker's IDs.
func New() string {
	return fill(func(c *[32]byte) {
		_, _ = rand.Read(c[:]) // never fails (crypto/rand panics on a broken source)
	})
}

// Of returns the ID derived from data: the same data always gives the same
// ID, in New's alphabet and length, and different data a different one as
// surely as SHA-256 tells them apart.
func Of(data []byte) string {
	digest := sha256.Sum256(data)
	return fill(func(c *[32]byte) {
		*c = digest
		digest = sha256.Sum256(digest[:])
	})
}

// fill builds an ID from the 32-byte blocks next writes. 252 is the largest
// multiple of 36 below 256: rejecting larger bytes keeps every character
// equally likely.
func fill(next func(*[32]byte)) string {
	b := make([]byte, 25)
	for i := 0; i < len(b); {
		var c [32]byte
		next(&c)
		for _, x := range c {
			if x < 252 && i < len(b) {
				b[i] = alphabet[x%36]
				i++
			}
		}
	}
	return string(b)
}
