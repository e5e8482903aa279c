// Package testutil holds the helpers ocapnet's tests share: waiting for a
// condition with a deadline, and recording what a handler received.
package testutil

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// pollInterval is how often WaitFor re-checks its condition.
const pollInterval = 5 * time.Millisecond

// WaitFor polls cond until it holds, failing the test with what after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pollInterval) // polling interval, not a wait for the condition
	}
}

// Recorder keeps every value it is given, safe for concurrent use. Tests
// hand its Add method to the code under test as a callback.
type Recorder[E any] struct {
	mu  sync.Mutex
	all []E
}

// Add records e.
func (r *Recorder[E]) Add(e E) {
	r.mu.Lock()
	r.all = append(r.all, e)
	r.mu.Unlock()
}

// All returns a copy of everything recorded, in order.
func (r *Recorder[E]) All() []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]E(nil), r.all...)
}

// Matching returns the recorded values for which match is true.
func (r *Recorder[E]) Matching(match func(E) bool) []E {
	var out []E
	for _, e := range r.All() {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// Of returns the recorded values of type T, in order.
func Of[T any, E any](r *Recorder[E]) []T {
	var out []T
	for _, e := range r.All() {
		if v, ok := any(e).(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// Libp2pSingletons are goleak options for the process-wide goroutines of
// go-libp2p's dependencies, started once and never stopped: not goroutines
// of ours.
func Libp2pSingletons() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	}
}
