// Package wake notices that the machine slept. A process does not run while
// its machine is suspended, so after a wake its timers fire late; the
// detector reads the wall clock every Interval and reports a wake when far
// more wall-clock time passed than the interval.
//
// Readings are compared without their monotonic component (t.Round(0)):
// Go's monotonic clock does not advance while a Linux machine is suspended,
// so time.Since between two readings would never show the jump.
package wake

import (
	"context"
	"time"
)

// Defaults, upstream's (reference §5.10).
const (
	DefaultInterval  = 15 * time.Second
	DefaultThreshold = 30 * time.Second
)

// Detector reports wall-clock jumps. The zero value uses the defaults.
type Detector struct {
	// Interval between wall-clock readings. Default 15 s.
	Interval time.Duration
	// Threshold is how much more than Interval must pass between two
	// readings for a wake to be reported. Default 30 s.
	Threshold time.Duration
	// Now returns the wall-clock time; default time.Now. Tests inject a
	// clock that jumps.
	Now func() time.Time
}

// Run reads the wall clock every Interval until ctx is done, and calls onWake
// with the gap between two readings whenever it exceeds Interval+Threshold.
// It blocks; onWake runs on Run's goroutine.
func (d Detector) Run(ctx context.Context, onWake func(gap time.Duration)) {
	interval, threshold, now := d.Interval, d.Threshold, d.Now
	if interval <= 0 {
		interval = DefaultInterval
	}
	if threshold <= 0 {
		threshold = DefaultThreshold
	}
	if now == nil {
		now = time.Now
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	last := now().Round(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		current := now().Round(0)
		if gap := current.Sub(last); gap > interval+threshold {
			onWake(gap)
		}
		last = current
	}
}
