package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// onChannel is the transport telling us of a new channel to id (with the
// peer's link lock held, before the channel carries anything). Frames we
// wrote on an older channel may never be read (a JavaScript peer closes a
// replaced stream and then accepts the gap, W1), so the whole
// unacknowledged window is written again on the new one, from the last
// acknowledgement, before anything newer.
func (n *Node) onChannel(id peer.ID, gen uint64) {
	if !n.await() {
		return
	}
	legacy := !slices.Contains(n.tr.Peer(id).Features, wire.FeatureClose)
	var p *peerState
	for {
		if p = n.peer(id); p == nil {
			return
		}
		n.mu.Lock()
		if !p.evicted {
			break
		}
		n.mu.Unlock()
	}
	defer n.mu.Unlock()
	if n.stopped || gen < p.chGen {
		return // stale: a newer channel was reported already
	}
	if p.legacy != legacy {
		p.legacy, p.legacyStored = legacy, false
	}
	if p.chGen != 0 && p.outstandingLocked() {
		n.metrics.retransmits.Inc()
	}
	p.chGen = gen
	p.next = max(p.acked, p.parkedTo) + 1
	p.rtRound = 0
	n.armRetransmitLocked(p, true)
	n.kickLocked(p)
}

// kickLocked starts p's pump if it has something to write.
func (n *Node) kickLocked(p *peerState) {
	if p.pumping || p.chGen == 0 || p.heldLocked() {
		return
	}
	if p.next <= max(p.acked, p.parkedTo) {
		p.next = max(p.acked, p.parkedTo) + 1
	}
	if p.next > p.lastSeq {
		return
	}
	if !n.startWorkLocked(p) {
		return
	}
	p.pumping = true
	go n.pump(p)
}

// A pump hands the transport runs of at most maxRun envelopes or
// maxRunBytes of payload: what is ready is written together, and a lone
// message is written at once.
const (
	maxRun      = 256
	maxRunBytes = 256 << 10
)

// pump writes p's window in order from p.next on the channel of generation
// p.chGen, in runs of what is ready, until there is nothing left to write or
// that channel is gone.
func (n *Node) pump(p *peerState) {
	defer n.endWork(p)
	var run []outMsg
	var frames [][]byte
	for {
		n.mu.Lock()
		if p.next <= max(p.acked, p.parkedTo) {
			p.next = max(p.acked, p.parkedTo) + 1
		}
		first, ack, gen, epoch := p.next, p.stored, p.chGen, p.inEpoch
		run = run[:0]
		size := 0
		for s := first; len(run) < maxRun && size < maxRunBytes && s <= p.lastSeq; s++ {
			m, ok := p.pending[s]
			if !ok {
				break
			}
			run = append(run, m)
			size += len(m.method) + len(m.params)
		}
		if n.stopped || first > p.lastSeq || p.heldLocked() {
			p.pumping = false
			n.mu.Unlock()
			return
		}
		if len(run) == 0 {
			if len(p.pending) >= n.opts.Window {
				// The window's worth is in memory, written and not yet
				// acknowledged: persistAcks kicks the pump when it frees
				// room.
				p.pumping = false
				n.mu.Unlock()
				return
			}
			// Not in memory: read the next page of the log.
			n.mu.Unlock()
			if err := n.loadPage(p, first); err != nil {
				n.mu.Lock()
				p.pumping = false
				n.mu.Unlock()
				if !errors.Is(err, store.ErrClosed) {
					n.log.Error("reading the outbound log failed; retried on the next channel", "peer", p.id, "from", first, "err", err)
				}
				return
			}
			continue
		}
		n.mu.Unlock()

		frames = frames[:0]
		var err error
		limit := n.tr.MaxMessageSize()
		carried := false // the last frame carried the ack
		for i, m := range run {
			e := wire.Envelope{Seq: first + uint64(i), Ack: ack, Method: m.method, Params: m.params}
			if wire.EnvelopeSize(e) > limit {
				e.Ack = 0 // the size rule: the ack is left out rather than overflow the frame
			}
			carried = e.Ack == ack
			var f []byte
			if f, err = wire.EncodeEnvelope(e); err != nil {
				break
			}
			frames = append(frames, f)
		}
		if err == nil {
			_, err = n.tr.TrySendFramesOn(n.ctx, p.id, frames, gen)
		}
		n.mu.Lock()
		if err != nil {
			if p.chGen != gen && (errors.Is(err, transport.ErrChannelChanged) || errors.Is(err, transport.ErrNotConnected)) {
				// onChannel moved us to a newer channel meanwhile (and
				// reset the cursor): carry on there.
				n.mu.Unlock()
				continue
			}
			// No channel, a replaced one not yet reported, a failed write
			// or a closed link: onChannel restarts the pump on the next
			// channel, from the last acknowledgement.
			p.pumping = false
			if !errors.Is(err, transport.ErrNotConnected) && !errors.Is(err, transport.ErrChannelChanged) &&
				!errors.Is(err, transport.ErrStopped) && n.ctx.Err() == nil {
				n.log.Debug("write failed; the window is resent on the next channel", "peer", p.id, "seq", first, "err", err)
			}
			n.mu.Unlock()
			return
		}
		if p.inEpoch == epoch && carried {
			p.ackSent = max(p.ackSent, ack)
		}
		if p.next == first && p.chGen == gen {
			p.next = first + uint64(len(run))
		}
		n.metrics.writtenRuns.Observe(float64(len(run)))
		n.armRetransmitLocked(p, false)
		n.mu.Unlock()
	}
}

// armRetransmitLocked starts the ack timer if messages are outstanding
// (restart: stop a running one first, after progress).
func (n *Node) armRetransmitLocked(p *peerState, restart bool) {
	if restart && p.rtTimer != nil {
		p.rtTimer.Stop()
		p.rtTimer = nil
	}
	if p.rtTimer != nil || !p.outstandingLocked() || n.stopped {
		return
	}
	d := n.opts.AckTimeout << min(p.rtRound, 20)
	if d <= 0 || d > n.opts.AckTimeoutMax {
		d = n.opts.AckTimeoutMax
	}
	if p.rtRound == 0 {
		p.waitingSince = time.Now()
	}
	p.rtGen++
	gen := p.rtGen
	p.rtTimer = time.AfterFunc(d, func() { n.retransmitDue(p, gen) })
}

// retransmitDue runs when no acknowledgement advanced for an ack timeout.
// Only rounds on an open channel count: without one, the next channel
// resends the window and re-arms the timer.
func (n *Node) retransmitDue(p *peerState, gen uint64) {
	n.mu.Lock()
	if p.rtGen != gen || p.rtTimer == nil || !n.enterLocked() {
		n.mu.Unlock()
		return
	}
	defer n.wg.Done()
	p.rtTimer = nil
	if !p.outstandingLocked() {
		n.mu.Unlock()
		return
	}
	if info := n.tr.Peer(p.id); info.State != transport.StateConnected {
		n.mu.Unlock()
		return
	}
	p.rtRound++
	if n.opts.MaxRetransmits > 0 && p.rtRound > n.opts.MaxRetransmits {
		n.mu.Unlock()
		n.giveUp(p, fmt.Errorf("%w after %d retransmissions", ErrNotAcknowledged, n.opts.MaxRetransmits))
		return
	}
	if p.rtRound >= n.opts.StallRounds {
		p.stalled = true
		unacked := int(p.lastSeq - p.acked)
		n.sum.Warn("stalled", "peer acknowledges nothing while its link is up", "peer", p.id, "unacked", unacked, "since", p.waitingSince, "rounds", p.rtRound)
		n.events.Push(Stalled{Peer: p.id, Unacked: unacked, Since: p.waitingSince, Rounds: p.rtRound})
		if g := n.opts.StallGiveUp; g > 0 && time.Since(p.waitingSince) >= g {
			since := p.waitingSince
			n.mu.Unlock()
			n.giveUp(p, fmt.Errorf("%w for %v since %s", ErrStalled, g, since.Format(time.RFC3339)))
			return
		}
	}
	n.metrics.retransmits.Inc()
	n.log.Debug("ack timeout: resending the window", "peer", p.id, "from", p.acked+1, "to", p.lastSeq, "round", p.rtRound)
	p.next = max(p.acked, p.parkedTo) + 1
	n.kickLocked(p)
	n.armRetransmitLocked(p, false)
	n.mu.Unlock()
}

// handleAckLocked applies a cumulative acknowledgement.
func (n *Node) handleAckLocked(p *peerState, a uint64) {
	if a > p.lastSeq {
		n.sum.Warn("ack-clamped", "peer acknowledged messages never sent: clamped", "peer", p.id, "ack", a, "last", p.lastSeq)
		a = p.lastSeq
	}
	if a <= p.acked {
		return
	}
	n.metrics.acked.Add(float64(a - p.acked))
	p.acked = a
	if p.parkedTo <= a {
		p.parkedTo = 0
	}
	p.roomLocked()
	n.endStallLocked(p)
	p.rtRound = 0
	n.armRetransmitLocked(p, true)
	n.updatePinLocked(p)
	if !p.persistingAck && n.startWorkLocked(p) {
		p.persistingAck = true
		go n.persistAcks(p)
	}
}

// persistAcks writes p's acknowledgements to the log (deleting the
// acknowledged messages) until it has caught up, and reports each range in
// an Acknowledged event once it is durable, with the messages' tags (from
// memory, or read from the log before they are deleted). Losing an
// acknowledgement in a crash only means those messages are resent, dropped
// as duplicates by the peer and acknowledged again; the event comes once,
// after the acknowledgement is recorded.
func (n *Node) persistAcks(p *peerState) {
	defer n.endWork(p)
	for {
		n.mu.Lock()
		a, from := p.acked, p.ackStored+1
		if a < from || n.stopped {
			p.persistingAck = false
			n.mu.Unlock()
			return
		}
		tags, missing := p.tagsLocked(from, a)
		n.mu.Unlock()
		err := n.st.Update(func(tx *store.Tx) error {
			if missing {
				rs, err := tx.Out(p.key, from, int(a-from+1))
				if err != nil {
					return err
				}
				for _, r := range rs {
					if r.Seq <= a && r.Tag != nil {
						if tags == nil {
							tags = map[uint64]json.RawMessage{}
						}
						tags[r.Seq] = r.Tag
					}
				}
			}
			_, err := tx.Ack(p.key, a)
			return err
		})
		n.mu.Lock()
		if err != nil {
			p.persistingAck = false
			n.mu.Unlock()
			n.log.Error("persisting an acknowledgement failed; retried on the next one", "peer", p.id, "err", err)
			return
		}
		for s := from; s <= a; s++ {
			delete(p.pending, s)
		}
		if a > p.ackStored {
			p.ackStored = a
			n.events.Push(Acknowledged{Peer: p.id, From: from, To: a, Tags: tags})
		}
		n.kickLocked(p) // the cache has room again
		n.mu.Unlock()
	}
}

// tagsLocked returns the tags of the cached messages from..to, and whether
// some of them are not in memory (their tags must be read from the log).
func (p *peerState) tagsLocked(from, to uint64) (tags map[uint64]json.RawMessage, missing bool) {
	for s := from; s <= to; s++ {
		m, ok := p.pending[s]
		if !ok {
			missing = true
			continue
		}
		if m.tag != nil {
			if tags == nil {
				tags = map[uint64]json.RawMessage{}
			}
			tags[s] = m.tag
		}
	}
	return tags, missing
}

// loadPage reads up to pageSize unacknowledged messages of p's log from
// seq from into memory.
func (n *Node) loadPage(p *peerState, from uint64) error {
	var rs []store.OutRecord
	if err := n.st.View(func(tx *store.Tx) (err error) {
		rs, err = tx.Out(p.key, from, pageSize)
		return err
	}); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.metrics.pages.Inc()
	for _, r := range rs {
		if r.Seq > p.acked && !r.Parked {
			p.pending[r.Seq] = outMsg{r.Method, r.Params, r.Tag}
		}
	}
	if _, ok := p.pending[from]; !ok && from <= p.lastSeq && from > max(p.acked, p.parkedTo) {
		return fmt.Errorf("%w: message %d of peer %s is not in the outbound log", store.ErrCorrupt, from, p.id)
	}
	return nil
}

// endStallLocked reports the end of a stall, if p was stalled.
func (n *Node) endStallLocked(p *peerState) {
	if p.stalled {
		p.stalled = false
		n.events.Push(StallEnded{Peer: p.id, Duration: time.Since(p.waitingSince)})
	}
}
