package daemon

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ackWaiters are the sends that wait for their acknowledgement (the API's
// ?wait=acked): each gets "" when its message is acknowledged, or why it
// will not be (given up, forgotten).
type ackWaiters struct {
	mu sync.Mutex
	w  map[peer.ID]map[uint64]chan string
}

func newAckWaiters() *ackWaiters { return &ackWaiters{w: map[peer.ID]map[uint64]chan string{}} }

// add registers a waiter for p's message seq.
func (a *ackWaiters) add(p peer.ID, seq uint64) <-chan string {
	ch := make(chan string, 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w[p] == nil {
		a.w[p] = map[uint64]chan string{}
	}
	a.w[p][seq] = ch
	return ch
}

func (a *ackWaiters) remove(p peer.ID, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.w[p], seq)
	if len(a.w[p]) == 0 {
		delete(a.w, p)
	}
}

// settle answers the waiters of p's messages from..to with reason ("" for
// acknowledged).
func (a *ackWaiters) settle(p peer.ID, from, to uint64, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for seq, ch := range a.w[p] {
		if seq >= from && seq <= to {
			ch <- reason
			delete(a.w[p], seq)
		}
	}
	if len(a.w[p]) == 0 {
		delete(a.w, p)
	}
}

func (a *ackWaiters) settleOne(p peer.ID, seq uint64, reason string) { a.settle(p, seq, seq, reason) }
