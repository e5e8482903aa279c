package node

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// onHandshake checks the peer against Allow/Deny and decides, from the
// incarnation persisted in the store (the one place that knows), whether the
// peer restarted; a restart resets the relationship before the channel
// carries any frame.
func (n *Node) onHandshake(id peer.ID, inc string) (restarted bool, err error) {
	if !n.allowed(id) {
		return false, fmt.Errorf("%w: %s", ErrPeerDenied, id)
	}
	if !n.await() {
		return false, ErrStopped
	}
	p, unlock := n.lockPeer(id, lockRecv|lockSendWrite)
	defer unlock()
	if p == nil {
		return false, ErrStopped
	}
	n.mu.Lock()
	prev, stored := p.incarnation, p.incStored
	hasState := p.lastSeq > 0 || p.delivered > 0 || p.intent > 0
	n.mu.Unlock()
	if prev == inc {
		return false, nil
	}
	if prev == "" || (!stored && !hasState) {
		// First sight, or a change with nothing to reset. The incarnation
		// is kept in memory and persisted with the first state worth
		// protecting (an identity that only handshakes costs no disk).
		if hasState {
			err := n.st.Update(func(tx *store.Tx) error {
				rec, _, err := tx.Peer(p.key)
				if err != nil {
					return err
				}
				rec.Incarnation = inc
				return tx.PutPeer(p.key, rec)
			})
			if err != nil {
				return false, err
			}
		}
		n.mu.Lock()
		p.incarnation, p.incStored = inc, hasState
		n.mu.Unlock()
		return false, nil
	}
	return true, n.peerRestarted(p, prev, inc)
}

// peerRestarted resets the relationship with a peer that lost its state:
// inbound numbering starts again at 1, and our undelivered messages are
// renumbered from 1, parked and handed back to the application. The caller
// holds p.recvMu and p.sendMu.
func (n *Node) peerRestarted(p *peerState, prev, inc string) error {
	var parked []store.OutRecord
	err := n.st.Update(func(tx *store.Tx) error {
		parked = parked[:0]
		rec, _, err := tx.Peer(p.key)
		if err != nil {
			return err
		}
		old, err := tx.Out(p.key, rec.Acked+1, 0)
		if err != nil {
			return err
		}
		seqs := make([]uint64, len(old))
		for i, r := range old {
			seqs[i] = r.Seq
		}
		if err := tx.DeleteOut(p.key, seqs); err != nil {
			return err
		}
		rec.NextSeq, rec.Acked, rec.Delivered, rec.Intent = 0, 0, 0, 0
		rec.Incarnation = inc
		if err := tx.PutPeer(p.key, rec); err != nil {
			return err
		}
		for _, r := range old {
			r.Parked = true
			seq, err := tx.AppendOut(p.key, r)
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
	defer n.mu.Unlock()
	p.incarnation, p.incStored = inc, true
	p.pending = map[uint64]outMsg{} // the parked ones are read from the log after a Resend
	p.acked, p.ackStored, p.lastSeq, p.next = 0, 0, uint64(len(parked)), 1
	p.parkedTo = uint64(len(parked))
	p.delivered, p.stored, p.intent, p.redeliverTo, p.ackSent = 0, 0, 0, 0, 0
	p.gapExpected, p.gapSeq, p.gapCount, p.rtRound, p.refused = 0, 0, 0, 0, 0
	p.inEpoch++
	p.intentBatch, p.reservedAt = 0, time.Time{}
	if p.rtTimer != nil {
		p.rtTimer.Stop()
		p.rtTimer = nil
	}
	n.endStallLocked(p)
	p.roomLocked()
	n.updatePinLocked(p)
	n.log.Info("peer restarted: state reset", "peer", p.id, "previous", prev, "current", inc, "parked", len(parked))
	n.events.Push(PeerRestarted{Peer: p.id, Previous: prev, Current: inc})
	if len(parked) > 0 {
		n.metrics.giveUps.Inc()
		n.events.Push(GaveUp{Peer: p.id, Reason: fmt.Errorf("peer %s restarted: %w", p.id, transport.ErrPeerRestarted), Messages: undelivered(parked)})
	}
	return nil
}

func undelivered(rs []store.OutRecord) []Undelivered {
	out := make([]Undelivered, len(rs))
	for i, r := range rs {
		out[i] = Undelivered{Seq: r.Seq, Method: r.Method, Params: r.Params, Tag: r.Tag}
	}
	return out
}
