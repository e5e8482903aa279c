package node

import (
	"errors"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
)

// activityLoop persists the last-active time and keeps the peer table
// within MaxIdlePeers.
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
			n.evictIdlePeers()
		}
	}
}

// evictIdlePeers drops from memory the least recently active peers beyond
// MaxIdlePeers that have nothing in flight. This bounds memory, never
// correctness: a peer is evicted only when everything about it is on disk
// (delivered position, incarnation, acknowledgements, its log), so its next
// contact reloads exactly where it was, however many identities passed
// through meanwhile (upstream keeps every peer in memory for ever, W16). The
// store keeps the record of every peer that exchanged a message; an
// identity that only handshook costs nothing on disk.
//
// The delivery intent is the one thing trimmed first: numbers reserved
// ahead by this process (docs/DELIVERY.md "Intent") are given back on disk,
// down to what was delivered or, if larger, to the range a crashed earlier
// process may have delivered. A reloaded peer treats its stored intent as
// that crash window, so without the trim its next messages would be marked
// as redeliveries although this process knows they are not.
func (n *Node) evictIdlePeers() {
	n.mu.Lock()
	excess := len(n.peers) - n.opts.MaxIdlePeers
	if excess <= 0 {
		n.mu.Unlock()
		return
	}
	var cands []*peerState
	for _, p := range n.peers {
		if n.evictableLocked(p) {
			cands = append(cands, p)
		}
	}
	slices.SortFunc(cands, func(a, b *peerState) int { return a.lastActive.Compare(b.lastActive) })
	// Nobody may be in the middle of working on them: their locks are held
	// from here to the drop.
	var locked []*peerState
	type trim struct {
		p  *peerState
		to uint64
	}
	var trims []trim
	for _, p := range cands {
		if len(locked) == excess {
			break
		}
		if !p.recvMu.TryLock() {
			continue
		}
		if !p.sendMu.TryLock() {
			p.recvMu.Unlock()
			continue
		}
		locked = append(locked, p)
		if keep := max(p.delivered, p.redeliverTo); p.intent > keep {
			trims = append(trims, trim{p, keep})
		}
	}
	n.mu.Unlock()
	defer func() {
		for _, p := range locked {
			p.sendMu.Unlock()
			p.recvMu.Unlock()
		}
	}()
	if len(trims) > 0 {
		err := n.st.Update(func(tx *store.Tx) error {
			for _, t := range trims {
				rec, ok, err := tx.Peer(t.p.key)
				if err != nil {
					return err
				}
				if ok && rec.Intent > t.to {
					rec.Intent = t.to
					if err := tx.PutPeer(t.p.key, rec); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			if !errors.Is(err, store.ErrClosed) {
				n.log.Error("trimming idle peers' delivery intents failed: kept in memory", "err", err)
			}
			return
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, t := range trims {
		t.p.intent = t.to
	}
	evicted := 0
	for _, p := range locked {
		if !n.stopped && n.evictableLocked(p) {
			n.dropPeerLocked(p)
			evicted++
		}
	}
	if evicted > 0 {
		n.metrics.evictions.Add(float64(evicted))
		n.log.Debug("dropped idle peers from memory (their state stays on disk)", "count", evicted, "cap", n.opts.MaxIdlePeers)
	}
}

// evictableLocked reports whether p has nothing in memory that is not on
// disk and nothing in flight.
func (n *Node) evictableLocked(p *peerState) bool {
	return p.lastSeq == p.acked && p.acked == p.ackStored && p.parkedTo == 0 &&
		p.delivered == p.stored && (p.incStored || p.incarnation == "" || (p.lastSeq == 0 && p.delivered == 0)) &&
		p.work == 0 && !p.pumping && !p.persistingAck && p.reserving == nil &&
		p.rtTimer == nil && p.ackTimer == nil && p.reserved == 0 && p.waiting == 0 && !p.stalled
}

// recentlyActive is how recent traffic makes a peer known (Handler.Known).
const recentlyActive = time.Hour

// known reports whether the node knows p (the transport's admission asks):
// it keeps durable state for it (something delivered or sent), or traffic
// with it was recent. It reads the store for a peer not in memory.
func (n *Node) known(id peer.ID) bool {
	n.mu.Lock()
	p := n.peers[id]
	if p != nil {
		k := p.lastSeq > 0 || p.delivered > 0 || time.Since(p.lastActive) < recentlyActive
		n.mu.Unlock()
		return k
	}
	n.mu.Unlock()
	var rec store.PeerRecord
	var ok bool
	if err := n.st.View(func(tx *store.Tx) (err error) {
		rec, ok, err = tx.Peer(id.String())
		return err
	}); err != nil {
		if !errors.Is(err, store.ErrClosed) {
			n.log.Error("reading a peer's record failed", "peer", id, "err", err)
		}
		return false
	}
	return ok && (rec.NextSeq > 0 || rec.Delivered > 0 || time.Since(rec.LastActive) < recentlyActive)
}
