package daemon

import (
	"sync/atomic"
	"time"
)

// TestClock is a wall clock that a test can step forward or backward (the
// "clock" op), to simulate wall-clock jumps: NTP corrections, a suspended
// machine. It is for tests only (ocapnet peer --test-clock, used by the
// chaos suite). Now strips the monotonic reading, so every comparison of
// two of its times sees a step, also where a real step would be hidden by
// Go's monotonic clock: a harsher test than reality.
type TestClock struct {
	offset atomic.Int64 // nanoseconds
}

// Now returns the wall-clock time plus the offset.
func (c *TestClock) Now() time.Time {
	return time.Now().Round(0).Add(time.Duration(c.offset.Load()))
}

// Jump steps the clock by d and returns the new offset.
func (c *TestClock) Jump(d time.Duration) time.Duration {
	return time.Duration(c.offset.Add(int64(d)))
}
