// Package eventq delivers events to a handler in the order they were pushed,
// from one goroutine, without ever blocking the producer: a slow handler
// delays later events, never the code that produced them.
//
// The queue is unbounded on purpose. Its users push few events (state
// changes, acknowledgements, give-ups), and some of them carry messages that
// must not be lost, so none is ever dropped. The goroutine is counted in the
// owner's WaitGroup, so the owner's Stop, which waits for its WaitGroup,
// waits for the last event to be delivered too.
package eventq

import "sync"

// Queue is an ordered event dispatcher. Create it with New.
type Queue[E any] struct {
	deliver func(E)

	mu      sync.Mutex // guards the following fields
	cond    *sync.Cond // signalled on push and close
	pending []E
	closed  bool
}

// New starts a queue that calls deliver for every pushed event, in order,
// from one goroutine counted in wg. A nil deliver makes a queue that
// discards everything (and starts no goroutine).
func New[E any](deliver func(E), wg *sync.WaitGroup) *Queue[E] {
	q := &Queue[E]{deliver: deliver}
	q.cond = sync.NewCond(&q.mu)
	if deliver != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.run()
		}()
	}
	return q
}

// Push queues e for delivery. It never blocks on the handler. After Close
// it does nothing and returns false.
func (q *Queue[E]) Push(e E) bool {
	if q.deliver == nil {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.pending = append(q.pending, e)
	q.cond.Signal()
	return true
}

// Close refuses further events. The goroutine delivers what is pending and
// then ends; wait for the owner's WaitGroup to know it has. Close is
// idempotent.
func (q *Queue[E]) Close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Signal()
	q.mu.Unlock()
}

func (q *Queue[E]) run() {
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closed {
			q.cond.Wait()
		}
		batch := q.pending
		q.pending = nil
		closed := q.closed
		q.mu.Unlock()
		for _, e := range batch {
			q.deliver(e)
		}
		if closed && len(batch) == 0 {
			return
		}
	}
}
