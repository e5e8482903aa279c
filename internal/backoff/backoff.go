// Package backoff computes exponential backoff delays with full jitter, the
// schedule upstream's calculateReconnectionBackoff uses (reference §5.1): the
// ceiling doubles from Base with each attempt up to Max, and the delay is
// drawn uniformly from [0, ceiling).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Default bounds, upstream's reconnection defaults.
const (
	DefaultBase = 500 * time.Millisecond
	DefaultMax  = 10 * time.Second
)

// Policy is an exponential backoff schedule. The zero value uses
// DefaultBase and DefaultMax.
type Policy struct {
	// Base is the ceiling of the first attempt's delay. Default 500 ms.
	Base time.Duration
	// Max caps the ceiling; a Max below Base is raised to Base (as
	// upstream's cap = max(base, max)). Default 10 s.
	Max time.Duration
	// Rand returns a number in [0, 1); default math/rand/v2's Float64. Tests
	// inject a fixed source.
	Rand func() float64
}

func (p Policy) bounds() (base, max time.Duration) {
	base, max = p.Base, p.Max
	if base <= 0 {
		base = DefaultBase
	}
	if max <= 0 {
		max = DefaultMax
	}
	return base, maxDuration(base, max)
}

// Ceiling returns min(Max, Base·2^(attempt-1)) for a 1-based attempt; an
// attempt below 1 counts as 1. It does not overflow for large attempts.
func (p Policy) Ceiling(attempt int) time.Duration {
	base, max := p.bounds()
	if attempt < 1 {
		attempt = 1
	}
	c := base
	for i := 1; i < attempt; i++ {
		if c >= max/2 {
			return max
		}
		c *= 2
	}
	return min(c, max)
}

// Delay returns the wait before a 1-based attempt: uniform in
// [0, Ceiling(attempt)) (full jitter), so that many peers retrying after one
// outage spread out instead of hammering a recovering peer in step.
func (p Policy) Delay(attempt int) time.Duration {
	r := p.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(p.Ceiling(attempt)))
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
