package node

import (
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// Close closes the link to a peer on purpose. When it returns, sends to the
// peer are refused (transport.ErrIntentionallyClosed) until Reconnect, every
// unacknowledged message is parked and has been handed back in a GaveUp
// event (queued for OnEvent), and the peer is being told.
func (n *Node) Close(id peer.ID) error {
	if !n.running() {
		return ErrStopped
	}
	return n.tr.Close(id)
}

// Reconnect clears a Close, a closed-by-peer or failed state and connects
// now. When it returns, sends are admitted again. Parked messages stay
// parked until Resend or Discard.
func (n *Node) Reconnect(id peer.ID, hints ...string) error {
	p := n.peer(id)
	if p == nil {
		return ErrStopped
	}
	if err := n.tr.Reconnect(id, hints...); err != nil {
		return err
	}
	n.mu.Lock()
	n.updatePinLocked(p)
	n.mu.Unlock()
	return nil
}

// Resend puts a peer's parked messages back into the window with their
// sequence numbers; they are sent before any later message. When it returns
// they are in the window. It returns how many there were.
func (n *Node) Resend(id peer.ID) (int, error) {
	return n.resolveParked(id, func(tx *store.Tx, key string) ([]store.OutRecord, error) { return tx.UnparkOut(key) }, false)
}

// Discard deletes a peer's parked messages for good and returns how many
// there were. Their sequence numbers are not reused, so the peer sees a gap,
// which an ocapnet peer accepts after GapTolerance receptions of the next
// message (reporting a Gap event) and a JavaScript peer accepts at once.
func (n *Node) Discard(id peer.ID) (int, error) {
	return n.resolveParked(id, func(tx *store.Tx, key string) ([]store.OutRecord, error) { return tx.DiscardParked(key) }, true)
}

func (n *Node) resolveParked(id peer.ID, op func(*store.Tx, string) ([]store.OutRecord, error), discard bool) (int, error) {
	p, unlock := n.lockPeer(id, lockSendWrite)
	defer unlock()
	if p == nil {
		return 0, ErrStopped
	}
	var rs []store.OutRecord
	err := n.st.Update(func(tx *store.Tx) (err error) {
		rs, err = op(tx, p.key)
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
		p.roomLocked()
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
	err := n.st.View(func(tx *store.Tx) (err error) {
		rs, err = tx.Parked(id.String(), 0)
		return err
	})
	return undelivered(rs), err
}

// Forget closes the link to a peer, deletes everything stored about it and
// returns the messages that were still undelivered (so nothing is lost
// silently). When it returns, nothing about the peer is left in the data
// directory or in the node's memory; the link stays closed until Reconnect.
func (n *Node) Forget(id peer.ID) ([]Undelivered, error) {
	if !n.running() {
		return nil, ErrStopped
	}
	if err := n.tr.Close(id); err != nil {
		return nil, err
	}
	p, unlock := n.lockPeer(id, lockSendWrite)
	defer unlock()
	if p == nil {
		return nil, ErrStopped
	}
	var rs []store.OutRecord
	err := n.st.Update(func(tx *store.Tx) error {
		rec, _, err := tx.Peer(p.key)
		if err != nil {
			return err
		}
		if rs, err = tx.Out(p.key, rec.Acked+1, 0); err != nil {
			return err
		}
		return tx.ForgetPeer(p.key)
	})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.dropPeerLocked(p)
	n.mu.Unlock()
	return undelivered(rs), nil
}

// dropPeerLocked removes p from memory (its stored state is the caller's
// business); a caller still holding p looks it up again (p.evicted).
func (n *Node) dropPeerLocked(p *peerState) {
	p.evicted = true
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

// Peers returns a snapshot of the peer relationships in memory: every peer
// with messages in flight, parked or waiting, every peer active within the
// idle window (MaxIdlePeers), and every peer the transport knows. Peers
// idle longer live only in the store (they load on use); Peer answers for
// any of them.
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
		out = append(out, statusLocked(p, info))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Peer returns id's status, from memory or, for a peer idle long enough to
// live only in the store, from its stored record (without loading it).
// ok is false if the node has never exchanged messages with id.
func (n *Node) Peer(id peer.ID) (ps PeerStatus, ok bool, err error) {
	info := n.tr.Peer(id)
	n.mu.Lock()
	if p := n.peers[id]; p != nil {
		ps = statusLocked(p, info)
		n.mu.Unlock()
		return ps, true, nil
	}
	n.mu.Unlock()
	var rec store.PeerRecord
	if err := n.st.View(func(tx *store.Tx) (err error) {
		rec, ok, err = tx.Peer(id.String())
		return err
	}); err != nil || !ok {
		return PeerStatus{PeerInfo: info}, false, err
	}
	return statusLocked(newPeerState(id, rec, true, 0), info), true, nil
}

// statusLocked is p's status next to the transport's view of its link.
func statusLocked(p *peerState, info transport.PeerInfo) PeerStatus {
	parked := 0
	if p.parkedTo > p.acked {
		parked = int(p.parkedTo - p.acked)
	}
	ps := PeerStatus{
		PeerInfo: info, NextSeq: p.lastSeq, Acked: p.acked,
		Unacked: int(p.lastSeq - p.acked), Parked: parked, Waiting: p.waiting, Delivered: p.delivered,
	}
	if p.stalled {
		ps.StalledSince = p.waitingSince
	}
	return ps
}

// running reports whether Stop has not begun.
func (n *Node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.stopped
}
