package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// onFrame handles one inbound application frame; the transport calls it
// sequentially per peer.
func (n *Node) onFrame(from peer.ID, frame []byte) {
	m, err := wire.DecodeMessage(frame)
	if err != nil {
		// Not acknowledged: a sender that meant it will resend.
		n.log.Warn("malformed frame dropped", "peer", from, "err", err)
		return
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
	p := n.peerLocked(from)
	p.lastActive = time.Now()
	if m.Envelope.Ack > 0 {
		n.handleAckLocked(p, m.Envelope.Ack)
	}
	if m.IsAck {
		n.mu.Unlock()
		return
	}
	e := m.Envelope
	expected := p.delivered + 1
	switch {
	case e.Seq < expected:
		// A duplicate: our ack was lost or is on its way. Re-acknowledge
		// so the sender stops resending.
		p.reAck = true
		n.scheduleAckLocked(p)
		n.mu.Unlock()
		return
	case e.Seq > expected && p.refused == expected:
		// Our handler refused the expected message: this is not evidence
		// of a sender that skipped it.
		n.mu.Unlock()
		return
	case e.Seq > expected:
		if p.gapExpected == expected && p.gapSeq == e.Seq {
			p.gapCount++
		} else {
			p.gapExpected, p.gapSeq, p.gapCount = expected, e.Seq, 1
		}
		if p.gapCount < n.opts.GapTolerance {
			n.mu.Unlock()
			return // not acknowledged: the sender resends from the gap
		}
		n.metrics.gaps.Inc()
		n.log.Warn("accepting a gap in the peer's sequence", "peer", from, "from", expected, "to", e.Seq-1)
		n.events.push(Gap{Peer: from, From: expected, To: e.Seq - 1})
	}
	p.gapExpected, p.gapSeq, p.gapCount = 0, 0, 0
	redelivery := e.Seq <= p.redeliverTo && e.Seq > p.stored
	skipTo := e.Seq - 1 // > p.delivered only after an accepted gap
	needIntent := e.Seq > p.intent
	n.mu.Unlock()

	if needIntent || skipTo > p.delivered {
		intent := e.Seq + uint64(n.opts.IntentBatch) - 1
		err := n.st.Update(func(tx *store.Tx) error {
			rec, _, err := tx.Peer(from.String())
			if err != nil {
				return err
			}
			rec.Intent = max(rec.Intent, intent)
			rec.Delivered = max(rec.Delivered, skipTo)
			rec.LastActive = time.Now().Round(0).UTC()
			return tx.PutPeer(from.String(), rec)
		})
		if err != nil {
			// Not delivered and not acknowledged: the sender resends.
			n.log.Error("recording delivery intent failed: message not delivered", "peer", from, "seq", e.Seq, "err", err)
			return
		}
		n.mu.Lock()
		p.intent = max(p.intent, intent)
		p.delivered = max(p.delivered, skipTo)
		p.stored = max(p.stored, skipTo)
		n.mu.Unlock()
	}
	if n.h.OnMessage != nil {
		if err := n.h.OnMessage(Message{From: from, Seq: e.Seq, Method: e.Method, Params: e.Params, Redelivery: redelivery}); err != nil {
			n.metrics.refused.Inc()
			n.log.Warn("handler refused a message; it will be offered again", "peer", from, "seq", e.Seq, "err", err)
			n.mu.Lock()
			p.refused = e.Seq
			n.mu.Unlock()
			return
		}
	}
	n.metrics.delivered.Inc()
	if redelivery {
		n.metrics.redelivered.Inc()
	}
	n.mu.Lock()
	p.refused = 0
	p.delivered = max(p.delivered, e.Seq)
	n.scheduleAckLocked(p)
	n.mu.Unlock()
}

// scheduleAckLocked arranges for the delivered position to be persisted and
// acknowledged within AckDelay, unless an outgoing message carries it first.
func (n *Node) scheduleAckLocked(p *peerState) {
	if p.ackTimer != nil || n.stopped {
		return
	}
	p.ackGen++
	gen := p.ackGen
	p.ackTimer = time.AfterFunc(n.opts.AckDelay, func() { n.flushAck(p, gen) })
}

// flushAck persists p's delivered position, then acknowledges it unless an
// outgoing message already carried it. An acknowledgement is only ever sent
// for deliveries that are recorded, so a crash cannot lose an acknowledged
// message.
func (n *Node) flushAck(p *peerState, gen uint64) {
	n.mu.Lock()
	if p.ackGen != gen || p.ackTimer == nil || !n.enterLocked() {
		n.mu.Unlock()
		return
	}
	defer n.wg.Done()
	p.ackTimer = nil
	d := p.delivered
	persist := d > p.stored
	n.mu.Unlock()
	if persist {
		err := n.st.Update(func(tx *store.Tx) error {
			rec, _, err := tx.Peer(p.id.String())
			if err != nil {
				return err
			}
			rec.Delivered = max(rec.Delivered, d)
			rec.LastActive = time.Now().Round(0).UTC()
			return tx.PutPeer(p.id.String(), rec)
		})
		if err != nil {
			n.log.Error("recording deliveries failed; not acknowledged", "peer", p.id, "err", err)
			return
		}
	}
	n.mu.Lock()
	p.stored = max(p.stored, d)
	send := p.stored > 0 && (p.stored > p.ackSent || p.reAck)
	a := p.stored
	p.reAck = false
	n.mu.Unlock()
	if !send {
		return
	}
	if err := n.tr.TrySend(n.ctx, p.id, wire.EncodeAck(a)); err == nil {
		n.mu.Lock()
		p.ackSent = max(p.ackSent, a)
		n.mu.Unlock()
	}
}

// onHandshake checks the peer against Allow/Deny and handles a changed
// incarnation (a peer that lost its state) before the channel carries any
// frame.
func (n *Node) onHandshake(id peer.ID, inc string) (bool, error) {
	if !n.allowed(id) {
		return false, fmt.Errorf("%w: %s", ErrPeerDenied, id)
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return false, ErrStopped
	}
	p := n.peerLocked(id)
	prev := p.incarnation
	n.mu.Unlock()
	if prev == inc {
		return false, nil
	}
	if prev == "" {
		// First sight: remember it.
		err := n.st.Update(func(tx *store.Tx) error {
			rec, _, err := tx.Peer(id.String())
			if err != nil {
				return err
			}
			if rec.Incarnation != "" && rec.Incarnation != inc {
				return errIncarnationRace
			}
			rec.Incarnation = inc
			rec.LastActive = time.Now().Round(0).UTC()
			return tx.PutPeer(id.String(), rec)
		})
		if err != nil && !errors.Is(err, errIncarnationRace) {
			return false, err
		}
		n.mu.Lock()
		p.incarnation = inc
		n.mu.Unlock()
		return false, nil
	}
	return true, n.peerRestarted(p, prev, inc)
}

var errIncarnationRace = errors.New("incarnation changed concurrently")

// peerRestarted resets the relationship with a peer that lost its state:
// inbound numbering starts again at 1, and our undelivered messages are
// renumbered from 1, parked and handed back to the application.
func (n *Node) peerRestarted(p *peerState, prev, inc string) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	var parked []store.OutRecord
	err := n.st.Update(func(tx *store.Tx) error {
		parked = parked[:0]
		id := p.id.String()
		rec, _, err := tx.Peer(id)
		if err != nil {
			return err
		}
		old, err := tx.Out(id, rec.Acked+1, 0)
		if err != nil {
			return err
		}
		seqs := make([]uint64, len(old))
		for i, r := range old {
			seqs[i] = r.Seq
		}
		if err := tx.DeleteOut(id, seqs); err != nil {
			return err
		}
		rec.NextSeq, rec.Acked, rec.Delivered, rec.Intent = 0, 0, 0, 0
		rec.Incarnation = inc
		if err := tx.PutPeer(id, rec); err != nil {
			return err
		}
		for _, r := range old {
			r.Parked = true
			seq, err := tx.AppendOut(id, r)
			if err != nil {
				return err
			}
			r.Seq = seq
			parked = append(parked, r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	p.incarnation = inc
	p.pending = map[uint64]outMsg{}
	for _, r := range parked {
		p.pending[r.Seq] = outMsg{r.Method, r.Params}
	}
	p.acked, p.ackStored, p.lastSeq, p.next = 0, 0, uint64(len(parked)), 1
	p.parkedTo = uint64(len(parked))
	p.delivered, p.stored, p.intent, p.redeliverTo, p.ackSent = 0, 0, 0, 0, 0
	p.gapExpected, p.gapSeq, p.gapCount, p.rtRound = 0, 0, 0, 0
	if p.rtTimer != nil {
		p.rtTimer.Stop()
		p.rtTimer = nil
	}
	n.updatePinLocked(p)
	n.log.Info("peer restarted: state reset", "peer", p.id, "previous", prev, "current", inc, "parked", len(parked))
	n.events.push(PeerRestarted{Peer: p.id, Previous: prev, Current: inc})
	if len(parked) > 0 {
		n.metrics.giveUps.Inc()
		n.events.push(GaveUp{Peer: p.id, Reason: fmt.Errorf("peer %s restarted: %w", p.id, transport.ErrPeerRestarted), Messages: undelivered(parked)})
	}
	n.mu.Unlock()
	return nil
}

func undelivered(rs []store.OutRecord) []Undelivered {
	out := make([]Undelivered, len(rs))
	for i, r := range rs {
		out[i] = Undelivered{Seq: r.Seq, Method: r.Method, Params: r.Params}
	}
	return out
}

// onTransportEvent follows the transport's view of each peer.
func (n *Node) onTransportEvent(ev transport.Event) {
	switch e := ev.(type) {
	case transport.StateChanged:
		n.onState(e.Peer)
		n.events.push(StateChanged{Peer: e.Peer})
	case transport.WakeDetected:
		n.events.push(WakeDetected{Gap: e.Gap})
	case transport.GaveUp:
		// Our frames never wait in the transport's queue (TrySend), so
		// there is nothing of ours in e.Messages; a give-up for retries
		// exhausted is an application-configured limit.
		if errors.Is(e.Reason, transport.ErrRetriesExhausted) {
			n.mu.Lock()
			p := n.peerLocked(e.Peer)
			n.mu.Unlock()
			n.giveUp(p, e.Reason)
		}
	}
}

func (n *Node) onState(info transport.PeerInfo) {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
	p := n.peerLocked(info.ID)
	wasFailed := p.failed
	p.failed = info.State == transport.StateFailed
	var closedReason error
	switch info.State {
	case transport.StateConnected:
		p.connected = true
		p.closed = nil
		// Resend the whole unacknowledged window at once.
		if p.outstandingLocked() {
			n.metrics.retransmits.Inc()
		}
		p.next = max(p.acked, p.parkedTo) + 1
		p.rtRound = 0
		n.armRetransmitLocked(p, true)
		n.kickLocked(p)
		n.updatePinLocked(p)
	case transport.StateClosed:
		p.connected = false
		closedReason = transport.ErrIntentionallyClosed
	case transport.StateClosedByPeer:
		p.connected = false
		closedReason = transport.ErrClosedByPeer
	default:
		p.connected = false
	}
	n.mu.Unlock()
	if p.failed != wasFailed {
		since := time.Time{}
		if p.failed {
			since = info.Since.Round(0).UTC()
		}
		if err := n.st.Update(func(tx *store.Tx) error {
			rec, _, err := tx.Peer(info.ID.String())
			if err != nil {
				return err
			}
			rec.FailedSince = since
			return tx.PutPeer(info.ID.String(), rec)
		}); err != nil {
			n.log.Error("persisting failure state failed", "peer", info.ID, "err", err)
		}
	}
	if closedReason != nil {
		n.mu.Lock()
		p.closed = fmt.Errorf("%w", closedReason)
		n.updatePinLocked(p)
		n.mu.Unlock()
		n.giveUp(p, fmt.Errorf("link to %s: %w", info.ID, closedReason))
	}
}

// giveUp parks every unacknowledged message of p and hands them to the
// application in a GaveUp event.
func (n *Node) giveUp(p *peerState, reason error) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	var parked []store.OutRecord
	err := n.st.Update(func(tx *store.Tx) error {
		var err error
		parked, err = tx.ParkOut(p.id.String())
		return err
	})
	if err != nil {
		n.log.Error("parking messages failed; they stay in the window", "peer", p.id, "err", err)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return
	}
	for _, r := range parked {
		if r.Seq > p.acked {
			p.parkedTo = max(p.parkedTo, r.Seq)
		}
	}
	if p.rtTimer != nil {
		p.rtTimer.Stop()
		p.rtTimer = nil
	}
	n.updatePinLocked(p)
	if len(parked) > 0 {
		n.metrics.giveUps.Inc()
		n.log.Info("gave up on messages; parked until Resend or Discard", "peer", p.id, "count", len(parked), "reason", reason)
		n.events.push(GaveUp{Peer: p.id, Reason: reason, Messages: undelivered(parked)})
	}
}
