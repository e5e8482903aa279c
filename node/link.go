package node

import (
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// onLinkEnded is the transport telling us (with the peer's link lock held)
// that it stopped trying to reach id: closed here, closed by the peer, or
// retries exhausted. Sends are refused from now on (Admit), and every
// unacknowledged message is parked and handed back before this returns, so
// that when Close returns the messages are parked.
func (n *Node) onLinkEnded(id peer.ID, reason error) {
	if !n.await() {
		return
	}
	if p := n.peer(id); p != nil {
		n.giveUp(p, reason)
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
		parked, err = tx.ParkOut(p.key)
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
	n.endStallLocked(p)
	p.rtRound = 0
	n.updatePinLocked(p)
	if len(parked) > 0 {
		n.metrics.giveUps.Inc()
		n.log.Info("gave up on messages; parked until Resend or Discard", "peer", p.id, "count", len(parked), "reason", reason)
		n.events.Push(GaveUp{Peer: p.id, Reason: reason, Messages: undelivered(parked)})
	}
}

// onTransportEvent passes the transport's informational events on, and
// persists a peer's failure state so that it survives a restart.
func (n *Node) onTransportEvent(ev transport.Event) {
	switch e := ev.(type) {
	case transport.StateChanged:
		n.persistFailure(e.Peer)
		n.events.Push(StateChanged{Peer: e.Peer})
	case transport.WakeDetected:
		n.events.Push(WakeDetected{Gap: e.Gap})
	}
}

// persistFailure records in the store when the peer entered the failed
// state, or that it left it. The transport owns the state; the store keeps
// it across a restart (RestoreFailed), and this writes only on a change.
func (n *Node) persistFailure(info transport.PeerInfo) {
	since := time.Time{}
	if info.State == transport.StateFailed {
		since = info.Since.Round(0).UTC()
	}
	key := info.ID.String()
	var rec store.PeerRecord
	var ok bool
	if err := n.st.View(func(tx *store.Tx) (err error) {
		rec, ok, err = tx.Peer(key)
		return err
	}); err != nil {
		if !errors.Is(err, store.ErrClosed) {
			n.log.Error("reading failure state failed", "peer", info.ID, "err", err)
		}
		return
	}
	if (!ok && since.IsZero()) || rec.FailedSince.IsZero() == since.IsZero() {
		return // no change (a failed peer's since is kept from its first report)
	}
	err := n.st.Update(func(tx *store.Tx) error {
		rec, _, err := tx.Peer(key)
		if err != nil {
			return err
		}
		rec.FailedSince = since
		return tx.PutPeer(key, rec)
	})
	if err != nil && !errors.Is(err, store.ErrClosed) {
		n.log.Error("persisting failure state failed", "peer", info.ID, "err", err)
	}
}
