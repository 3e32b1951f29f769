// Package ids makes the random identifiers of clusters, nodes, services and
// tasks.
package ids

import "crypto/rand"

const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// New returns 25 random lowercase alphanumerics, like Docker's IDs.
func New() string {
	b := make([]byte, 25)
	// 252 is the largest multiple of 36 below 256: rejecting larger bytes
	// keeps every character equally likely.
	for i := 0; i < len(b); {
		var c [32]byte
		_, _ = rand.Read(c[:]) // never fails (crypto/rand panics on a broken source)
		for _, x := range c {
			if x < 252 && i < len(b) {
				b[i] = alphabet[x%36]
				i++
			}
		}
	}
	return string(b)
}
