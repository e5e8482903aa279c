package node

import (
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/wire"
)

// onFrame handles one inbound application frame; the transport calls it
// sequentially per peer (with the peer's delivery lock held).
func (n *Node) onFrame(from peer.ID, frame []byte) {
	if !n.await() {
		return
	}
	m, err := wire.DecodeMessage(frame)
	if err != nil {
		// Not acknowledged: a sender that meant it will resend.
		n.sum.Warn("malformed-frame", "malformed frame dropped", "peer", from, "err", err)
		return
	}
	p, unlock := n.lockPeer(from, lockRecv)
	defer unlock()
	if p == nil {
		return
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
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
		// Receptions of the lowest frame after the gap are counted: a
		// sender that resends its whole window (upstream, §2.6) sends that
		// frame once per round, followed by higher ones, which do not count
		// (counting only a frame that repeats on its own would never reach
		// the tolerance for a window of two or more).
		switch {
		case p.gapExpected != expected || e.Seq < p.gapSeq:
			p.gapExpected, p.gapSeq, p.gapCount = expected, e.Seq, 1
		case e.Seq == p.gapSeq:
			p.gapCount++
		default:
			n.mu.Unlock()
			return // a higher frame of the same round
		}
		if p.gapCount < n.opts.GapTolerance {
			n.mu.Unlock()
			return // not acknowledged: the sender resends from the gap
		}
		n.metrics.gaps.Inc()
		n.log.Warn("accepting a gap in the peer's sequence", "peer", from, "from", expected, "to", e.Seq-1)
		n.events.Push(Gap{Peer: from, From: expected, To: e.Seq - 1})
	}
	p.gapExpected, p.gapSeq, p.gapCount = 0, 0, 0
	redelivery := e.Seq <= p.redeliverTo && e.Seq > p.stored
	skipTo := e.Seq - 1 // > p.delivered only after an accepted gap
	if e.Seq > p.intent && skipTo <= p.delivered && p.reserving != nil {
		// A reservation made ahead is on its way: wait for it rather than
		// write another.
		wait := p.reserving
		n.mu.Unlock()
		n.metrics.intentWaits.Inc()
		<-wait
		n.mu.Lock()
	}
	persist := e.Seq > p.intent || skipTo > p.delivered
	if !persist {
		n.reserveAheadLocked(p, e.Seq)
	}
	batch, inc := n.intentBatchLocked(p), p.incarnation
	legacy, legacyDirty := p.legacy, !p.legacyStored
	n.mu.Unlock()

	if persist {
		n.metrics.intentInLoop.Inc()
		intent := e.Seq + batch - 1
		err := n.st.Update(func(tx *store.Tx) error {
			rec, _, err := tx.Peer(p.key)
			if err != nil {
				return err
			}
			rec.Intent = max(rec.Intent, intent)
			rec.Delivered = max(rec.Delivered, skipTo)
			rec.LastActive = time.Now().Round(0).UTC()
			if rec.Incarnation == "" {
				// The first state worth protecting: keep the incarnation
				// with it (a peer that restarts later is recognised).
				rec.Incarnation = inc
			}
			if legacyDirty {
				rec.Legacy = legacy
			}
			return tx.PutPeer(p.key, rec)
		})
		if err != nil {
			// Not delivered and not acknowledged: the sender resends.
			n.sum.Log(slog.LevelError, "intent-failed", "recording delivery intent failed: message not delivered", "peer", from, "seq", e.Seq, "err", err)
			return
		}
		n.mu.Lock()
		p.intent = max(p.intent, intent)
		p.delivered = max(p.delivered, skipTo)
		p.stored = max(p.stored, skipTo)
		p.incStored = p.incStored || inc != ""
		p.legacyStored = p.legacyStored || (legacyDirty && p.legacy == legacy)
		n.mu.Unlock()
	}
	if n.h.OnMessage != nil {
		if err := n.h.OnMessage(Message{From: from, Seq: e.Seq, Method: e.Method, Params: e.Params, Redelivery: redelivery}); err != nil {
			n.metrics.refused.Inc()
			n.sum.Warn("handler-refused", "handler refused a message; it will be offered again", "peer", from, "seq", e.Seq, "err", err)
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
// message. It does not hold recvMu while the position is written, so the
// read loop goes on delivering meanwhile (it never waits for this fsync); a
// restart's reset that comes in between is not undone: the write is skipped
// when the stored incarnation changed, and the position in memory is not
// moved when the inbound epoch did.
func (n *Node) flushAck(p *peerState, gen uint64) {
	n.mu.Lock()
	if p.ackGen != gen || p.ackTimer == nil || !n.startWorkLocked(p) {
		n.mu.Unlock()
		return
	}
	defer n.endWork(p)
	p.ackTimer = nil
	d, epoch, inc := p.delivered, p.inEpoch, p.incarnation
	persist := d > p.stored
	n.mu.Unlock()

	if persist {
		err := n.st.Update(func(tx *store.Tx) error {
			rec, _, err := tx.Peer(p.key)
			if err != nil || (rec.Incarnation != "" && rec.Incarnation != inc) {
				return err // the peer restarted meanwhile: its numbering began again
			}
			rec.Delivered = max(rec.Delivered, d)
			rec.LastActive = time.Now().Round(0).UTC()
			return tx.PutPeer(p.key, rec)
		})
		if err != nil {
			n.log.Error("recording deliveries failed; not acknowledged", "peer", p.id, "err", err)
			return
		}
	}
	n.mu.Lock()
	if p.inEpoch != epoch {
		n.mu.Unlock()
		return
	}
	p.stored = max(p.stored, d)
	send := p.stored > 0 && (p.stored > p.ackSent || p.reAck)
	a := p.stored
	p.reAck = false
	n.mu.Unlock()
	if !send {
		return
	}
	if err := n.tr.TrySend(n.ctx, p.id, wire.EncodeAck(a)); err == nil {
		n.noteAckSent(p, a, epoch)
	}
}

// noteAckSent records that ack a (of inbound epoch epoch) was written to p.
func (n *Node) noteAckSent(p *peerState, a, epoch uint64) {
	n.mu.Lock()
	if p.inEpoch == epoch {
		p.ackSent = max(p.ackSent, a)
	}
	n.mu.Unlock()
}

// Intent reservations. Before a message is handed to the application, the
// store must say it may have been delivered (PeerRecord.Intent), so that a
// crash marks it as a redelivery. Reserving one number per message would
// cost an fsync each; the node reserves a batch at a time, and reserves the
// next batch ahead, in the background, when half of the current one is
// used, so the read loop does not wait for an fsync in the steady state.
// The batch adapts to the rate: it doubles (up to IntentBatchMax) when a
// batch lasts less than intentFast, and halves (down to IntentBatch) when it
// lasts more than intentSlow. After a crash, at most IntentBatchMax messages
// are handed over again marked Redelivery.
const (
	intentFast = 200 * time.Millisecond
	intentSlow = 2 * time.Second
)

// intentBatchLocked returns p's current reservation size.
func (n *Node) intentBatchLocked(p *peerState) uint64 {
	if p.intentBatch == 0 {
		p.intentBatch = uint64(n.opts.IntentBatch)
	}
	return p.intentBatch
}

// reserveAheadLocked starts a background reservation of the next batch when
// less than half of the reserved numbers are left after seq.
func (n *Node) reserveAheadLocked(p *peerState, seq uint64) {
	batch := n.intentBatchLocked(p)
	if p.reserving != nil || p.intent-seq >= batch/2 || !n.startWorkLocked(p) {
		return
	}
	now := time.Now()
	switch since := now.Sub(p.reservedAt); {
	case since < intentFast:
		batch = min(2*batch, uint64(n.opts.IntentBatchMax))
	case since > intentSlow:
		batch = max(batch/2, uint64(n.opts.IntentBatch))
	}
	p.intentBatch, p.reservedAt = batch, now
	target, epoch, inc := p.intent+batch, p.inEpoch, p.incarnation
	done := make(chan struct{})
	p.reserving = done
	go func() {
		defer n.endWork(p)
		err := n.st.Update(func(tx *store.Tx) error {
			rec, _, err := tx.Peer(p.key)
			if err != nil || rec.Incarnation != inc {
				return err // the peer restarted meanwhile: its numbering began again
			}
			rec.Intent = max(rec.Intent, target)
			return tx.PutPeer(p.key, rec)
		})
		n.mu.Lock()
		if err == nil && p.inEpoch == epoch {
			p.intent = max(p.intent, target)
		} else if err != nil {
			n.sum.Log(slog.LevelError, "intent-ahead-failed", "reserving delivery intent ahead failed; reserved on demand", "peer", p.id, "err", err)
		}
		p.reserving = nil
		close(done)
		n.mu.Unlock()
	}()
}
