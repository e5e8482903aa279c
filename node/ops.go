package node

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// Close closes the link to a peer on purpose (transport.Close): the peer is
// told, sends are refused until Reconnect, and every unacknowledged message
// is parked and handed back in a GaveUp event.
func (n *Node) Close(id peer.ID) error {
	if n.isStopped() {
		return ErrStopped
	}
	return n.tr.Close(id)
}

// Reconnect clears a Close, a closed-by-peer or failed state and connects
// now. Parked messages stay parked until Resend or Discard.
func (n *Node) Reconnect(id peer.ID, hints ...string) error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return ErrStopped
	}
	p := n.peerLocked(id)
	p.closed = nil
	n.updatePinLocked(p)
	n.mu.Unlock()
	return n.tr.Reconnect(id, hints...)
}

// Resend puts a peer's parked messages back into the window with their
// sequence numbers; they are sent before any later message. It returns how
// many there were.
func (n *Node) Resend(id peer.ID) (int, error) {
	return n.resolveParked(id, func(tx *store.Tx) ([]store.OutRecord, error) { return tx.UnparkOut(id.String()) }, false)
}

// Discard deletes a peer's parked messages for good and returns how many
// there were. Their sequence numbers are not reused, so the peer sees a gap,
// which an ocapnet peer accepts after GapTolerance receptions of the next
// message (reporting a Gap event) and a JavaScript peer accepts at once.
func (n *Node) Discard(id peer.ID) (int, error) {
	return n.resolveParked(id, func(tx *store.Tx) ([]store.OutRecord, error) { return tx.DiscardParked(id.String()) }, true)
}

func (n *Node) resolveParked(id peer.ID, op func(*store.Tx) ([]store.OutRecord, error), discard bool) (int, error) {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return 0, ErrStopped
	}
	p := n.peerLocked(id)
	n.mu.Unlock()
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	var rs []store.OutRecord
	err := n.st.Update(func(tx *store.Tx) (err error) {
		rs, err = op(tx)
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(rs) == 0 {
		return 0, fmt.Errorf("%s: %w", id, ErrNothingParked)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	p.parkedTo = 0
	if discard {
		top := rs[len(rs)-1].Seq
		for _, r := range rs {
			delete(p.pending, r.Seq)
		}
		// The discarded numbers count as settled; later acks cover them.
		p.acked = max(p.acked, top)
		p.ackStored = max(p.ackStored, top)
		close(p.room)
		p.room = make(chan struct{})
	}
	p.next = p.acked + 1
	p.rtRound = 0
	n.updatePinLocked(p)
	n.armRetransmitLocked(p, true)
	n.kickLocked(p)
	return len(rs), nil
}

// Parked returns a peer's parked messages (handed back in a GaveUp event and
// waiting for Resend or Discard), in order.
func (n *Node) Parked(id peer.ID) ([]Undelivered, error) {
	var rs []store.OutRecord
	err := n.st.View(func(tx *store.Tx) error {
		all, err := tx.Out(id.String(), 0, 0)
		for _, r := range all {
			if r.Parked {
				rs = append(rs, r)
			}
		}
		return err
	})
	return undelivered(rs), err
}

// Store returns the node's data directory store (the peer daemon keeps its
// event log there).
func (n *Node) Store() *store.Store { return n.st }

// Forget deletes everything stored about a peer and returns the messages
// that were still undelivered (so nothing is lost silently). The peer's link
// is closed first.
func (n *Node) Forget(id peer.ID) ([]Undelivered, error) {
	if n.isStopped() {
		return nil, ErrStopped
	}
	_ = n.tr.Close(id)
	n.mu.Lock()
	p := n.peerLocked(id)
	n.mu.Unlock()
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	var rs []store.OutRecord
	err := n.st.Update(func(tx *store.Tx) error {
		rec, _, err := tx.Peer(id.String())
		if err != nil {
			return err
		}
		if rs, err = tx.Out(id.String(), rec.Acked+1, 0); err != nil {
			return err
		}
		return tx.ForgetPeer(id.String())
	})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.dropPeerLocked(p)
	n.mu.Unlock()
	return undelivered(rs), nil
}

func (n *Node) dropPeerLocked(p *peerState) {
	for _, t := range []*time.Timer{p.rtTimer, p.ackTimer} {
		if t != nil {
			t.Stop()
		}
	}
	p.rtTimer, p.ackTimer = nil, nil
	if p.pinned {
		n.tr.SetPinned(p.id, false)
	}
	if n.peers[p.id] == p {
		delete(n.peers, p.id)
	}
}

// Peers returns a snapshot of every peer relationship.
func (n *Node) Peers() []PeerStatus {
	infos := map[peer.ID]transport.PeerInfo{}
	for _, i := range n.tr.Peers() {
		infos[i.ID] = i
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]PeerStatus, 0, len(n.peers))
	for id, p := range n.peers {
		info, ok := infos[id]
		if !ok {
			info = transport.PeerInfo{ID: id}
		}
		parked := 0
		if p.parkedTo > p.acked {
			parked = int(p.parkedTo - p.acked)
		}
		out = append(out, PeerStatus{
			PeerInfo: info, NextSeq: p.lastSeq, Acked: p.acked,
			Unacked: int(p.lastSeq - p.acked), Parked: parked, Delivered: p.delivered,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (n *Node) isStopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

// activityLoop persists the last-active time and caps idle peers.
func (n *Node) activityLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.ActiveInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			if err := n.st.Update(func(tx *store.Tx) error { return tx.SetLastActive(time.Now()) }); err != nil {
				n.log.Error("persisting last-active time failed", "err", err)
			}
			n.capIdlePeers()
		}
	}
}

// capIdlePeers forgets the least recently active stored peers without
// pending work beyond MaxIdlePeers (upstream keeps every peer for ever, W16).
// Peers that are connected are kept.
func (n *Node) capIdlePeers() {
	type idle struct {
		id   string
		last time.Time
	}
	var cands []idle
	if err := n.st.View(func(tx *store.Tx) error {
		ids, err := tx.PeerIDs()
		if err != nil {
			return err
		}
		for _, id := range ids {
			rec, _, err := tx.Peer(id)
			if err != nil {
				return err
			}
			if rec.NextSeq > rec.Acked {
				continue // pending or parked work
			}
			cands = append(cands, idle{id, rec.LastActive})
		}
		return nil
	}); err != nil {
		n.log.Error("reading peers failed", "err", err)
		return
	}
	if len(cands) <= n.opts.MaxIdlePeers {
		return
	}
	slices.SortFunc(cands, func(a, b idle) int { return a.last.Compare(b.last) })
	n.mu.Lock()
	var forget []string
	for _, c := range cands[:len(cands)-n.opts.MaxIdlePeers] {
		pid, err := peer.Decode(c.id)
		if err == nil {
			if p := n.peers[pid]; p != nil && (p.connected || p.outstandingLocked() || p.parkedTo > p.acked) {
				continue
			}
		}
		forget = append(forget, c.id)
	}
	n.mu.Unlock()
	err := n.st.Update(func(tx *store.Tx) error {
		for _, id := range forget {
			rec, _, err := tx.Peer(id)
			if err != nil {
				return err
			}
			if rec.NextSeq > rec.Acked {
				continue // became busy meanwhile
			}
			if err := tx.ForgetPeer(id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.log.Error("forgetting idle peers failed", "err", err)
		return
	}
	n.mu.Lock()
	for _, id := range forget {
		if pid, err := peer.Decode(id); err == nil {
			if p := n.peers[pid]; p != nil && !p.connected && !p.outstandingLocked() {
				n.dropPeerLocked(p)
			}
		}
	}
	n.mu.Unlock()
	n.log.Info("forgot idle peers over the cap", "count", len(forget), "cap", n.opts.MaxIdlePeers)
}

// Stop stops the node: the transport stops, every goroutine ends, the
// delivered positions, acknowledgements and last-active time are persisted
// and the data directory is closed. Nothing pending is discarded: a node
// started again from the same directory continues where this one left off.
// Stop is idempotent.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { n.stopErr = n.stop(ctx) })
	return n.stopErr
}

func (n *Node) stop(ctx context.Context) error {
	var errs []error
	n.mu.Lock()
	n.stopped = true // sends fail, frames and closes during the stop are ignored
	n.mu.Unlock()
	if n.tr != nil {
		if err := n.tr.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	n.mu.Lock()
	for _, p := range n.peers {
		for _, t := range []*time.Timer{p.rtTimer, p.ackTimer} {
			if t != nil {
				t.Stop()
			}
		}
		p.rtTimer, p.ackTimer = nil, nil
	}
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()

	// Record what was delivered and acknowledged, so a restart neither
	// redelivers nor resends it.
	n.mu.Lock()
	type final struct {
		id               string
		delivered, acked uint64
	}
	var fs []final
	for _, p := range n.peers {
		if p.delivered > p.stored || p.acked > p.ackStored || p.intent > p.delivered {
			fs = append(fs, final{p.id.String(), p.delivered, p.acked})
		}
	}
	n.mu.Unlock()
	err := n.st.Update(func(tx *store.Tx) error {
		for _, f := range fs {
			rec, ok, err := tx.Peer(f.id)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			// Every handler has returned: what was delivered is exact,
			// so a restart marks nothing as a redelivery.
			rec.Delivered = max(rec.Delivered, f.delivered)
			rec.Intent = rec.Delivered
			if err := tx.PutPeer(f.id, rec); err != nil {
				return err
			}
			if _, err := tx.Ack(f.id, f.acked); err != nil {
				return err
			}
		}
		return tx.SetLastActive(time.Now())
	})
	if err != nil {
		errs = append(errs, err)
	}
	n.events.close()
	if err := n.st.Close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("node stop: %v", errs)
	}
	return nil
}

// eventQueue delivers events to the handler in order from one goroutine,
// so that no producer ever blocks on a slow handler.
type eventQueue struct {
	fn   func(Event)
	mu   sync.Mutex
	q    []Event
	wake chan struct{}
	done chan struct{}
	shut bool
}

func newEventQueue(fn func(Event)) *eventQueue {
	e := &eventQueue{fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go e.run()
	return e
}

func (e *eventQueue) push(ev Event) {
	if e.fn == nil {
		return
	}
	e.mu.Lock()
	if !e.shut {
		e.q = append(e.q, ev)
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *eventQueue) run() {
	defer close(e.done)
	for {
		e.mu.Lock()
		q := e.q
		e.q = nil
		shut := e.shut
		e.mu.Unlock()
		for _, ev := range q {
			e.fn(ev)
		}
		if len(q) == 0 {
			if shut {
				return
			}
			<-e.wake
		}
	}
}

// close delivers what is queued and ends the goroutine.
func (e *eventQueue) close() {
	e.mu.Lock()
	e.shut = true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	<-e.done
}
