package wake

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// jumpClock is a wall clock that can be moved forward without the passage
// of (fake) time, the way a suspended machine's wall clock jumps on wake.
type jumpClock struct{ offset atomic.Int64 }

func (c *jumpClock) now() time.Time       { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *jumpClock) jump(d time.Duration) { c.offset.Add(int64(d)) }

type recorder struct {
	mu   sync.Mutex
	gaps []time.Duration
}

func (r *recorder) onWake(gap time.Duration) {
	r.mu.Lock()
	r.gaps = append(r.gaps, gap)
	r.mu.Unlock()
}
func (r *recorder) get() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.gaps...)
}

func TestDetector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := &jumpClock{}
		rec := &recorder{}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Detector{Interval: 15 * time.Second, Threshold: 30 * time.Second, Now: clock.now}.Run(ctx, rec.onWake)
		}()

		time.Sleep(10 * time.Minute) // fake time: 40 normal intervals
		synctest.Wait()
		if got := rec.get(); len(got) != 0 {
			t.Fatalf("wake reported while time flowed normally: %v", got)
		}

		clock.jump(29 * time.Second) // interval + 29s < interval + threshold
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got := rec.get(); len(got) != 0 {
			t.Fatalf("wake reported for a jump under the threshold: %v", got)
		}

		clock.jump(2 * time.Hour)
		time.Sleep(15 * time.Second)
		synctest.Wait()
		got := rec.get()
		if len(got) != 1 || got[0] != 2*time.Hour+15*time.Second {
			t.Fatalf("after a 2h jump got wakes %v, want one of 2h0m15s", got)
		}

		clock.jump(time.Minute)
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got := rec.get(); len(got) != 2 || got[1] != time.Minute+15*time.Second {
			t.Fatalf("second jump: wakes %v", got)
		}

		cancel()
		<-done
	})
}

// A reading that still carries its monotonic component would hide the jump:
// Sub between two times with monotonic readings uses the monotonic clock.
// This test shows why the detector strips it with Round(0).
func TestMonotonicReadingHidesWallClockJump(t *testing.T) {
	a := time.Now()                        // wall + monotonic
	b := a.Add(time.Second)                // monotonic +1s
	wallB := b.Round(0).Add(2 * time.Hour) // the wall clock moved 2h more, as after suspend
	// Simulate a reading whose wall clock jumped but whose monotonic reading
	// did not: rebuild b's wall part while keeping the monotonic delta.
	if d := b.Sub(a); d != time.Second {
		t.Fatalf("monotonic difference = %v", d)
	}
	if d := wallB.Sub(a.Round(0)); d != 2*time.Hour+time.Second {
		t.Fatalf("wall-clock difference = %v", d)
	}
	if wallB.Sub(a) == b.Sub(a) {
		t.Fatal("stripping the monotonic reading made no difference")
	}
}

func TestDefaultsAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		clock := &jumpClock{}
		rec := &recorder{}
		done := make(chan struct{})
		go func() { defer close(done); Detector{Now: clock.now}.Run(ctx, rec.onWake) }()
		time.Sleep(DefaultInterval)
		clock.jump(DefaultThreshold + time.Second)
		time.Sleep(DefaultInterval)
		synctest.Wait()
		if len(rec.get()) != 1 {
			t.Fatalf("default thresholds: wakes %v", rec.get())
		}
		cancel()
		<-done
	})
}
