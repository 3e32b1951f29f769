package ca_test

import (
	"crypto/x509"
	"math/rand/v2"
	"testing"
	"time"

	"shoal/manager/ca"
)

func TestRenewAt(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		lifetime time.Duration
	}{
		{"one hour", time.Hour},
		{"90 days", 90 * 24 * time.Hour},
		{"20 years", 20 * 365 * 24 * time.Hour},
		{"three nanoseconds", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(tt.lifetime)}
			lo := start.Add(tt.lifetime / 2)
			hi := start.Add(tt.lifetime * 4 / 5) // no overflow for these lifetimes
			rnd := rand.New(rand.NewPCG(1, 2))
			earliest, latest := hi, lo
			for range 2000 {
				at := ca.RenewAt(leaf, rnd)
				if at.Before(lo) || at.After(hi) {
					t.Fatalf("RenewAt = %v, want within [%v, %v]", at, lo, hi)
				}
				if at.Before(earliest) {
					earliest = at
				}
				if at.After(latest) {
					latest = at
				}
			}
			// Spread over the window, not stuck at one end: 2000 uniform
			// samples leave less than 5% of it uncovered at either end.
			if slack := hi.Sub(lo) / 20; earliest.Sub(lo) > slack || hi.Sub(latest) > slack {
				t.Fatalf("samples span [%v, %v], want close to [%v, %v]", earliest, latest, lo, hi)
			}
		})
	}
}

func TestRenewAtEdgeCases(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		leaf *x509.Certificate
		rnd  *rand.Rand
		lo   time.Time
		hi   time.Time
	}{
		{"no lifetime renews now", &x509.Certificate{NotBefore: start, NotAfter: start}, rand.New(rand.NewPCG(1, 2)), start, start},
		{"inverted lifetime renews now", &x509.Certificate{NotBefore: start, NotAfter: start.Add(-time.Hour)}, nil, start, start},
		{"nil source uses the global one", &x509.Certificate{NotBefore: start, NotAfter: start.Add(10 * time.Hour)}, nil,
			start.Add(5 * time.Hour), start.Add(8 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := ca.RenewAt(tt.leaf, tt.rnd)
			if at.Before(tt.lo) || at.After(tt.hi) {
				t.Fatalf("RenewAt = %v, want within [%v, %v]", at, tt.lo, tt.hi)
			}
		})
	}
}
