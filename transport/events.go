package transport

import "sync"

// eventQueue delivers events to the handler in order from one goroutine,
// buffering without bound so that a slow handler never blocks the network
// code. Events are few (state changes, give-ups); every GaveUp carries
// messages that must not be lost, so none is ever dropped.
type eventQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []Event
	closed  bool
	done    chan struct{}
	deliver func(Event)
}

func newEventQueue(deliver func(Event)) *eventQueue {
	q := &eventQueue{deliver: deliver, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

func (q *eventQueue) push(e Event) {
	if q.deliver == nil {
		return
	}
	q.mu.Lock()
	if !q.closed {
		q.pending = append(q.pending, e)
		q.cond.Signal()
	}
	q.mu.Unlock()
}

func (q *eventQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.pending) == 0 {
			q.mu.Unlock()
			return
		}
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		for _, e := range batch {
			q.deliver(e)
		}
	}
}

// close delivers what is pending, then ends the goroutine and waits for it.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Signal()
	q.mu.Unlock()
	<-q.done
}
