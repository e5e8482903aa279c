package node

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

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
	busy := func(p *peerState) bool {
		return p.outstandingLocked() || p.parkedTo > p.acked || n.tr.Peer(p.id).State == transport.StateConnected
	}
	n.mu.Lock()
	var forget []string
	for _, c := range cands[:len(cands)-n.opts.MaxIdlePeers] {
		pid, err := peer.Decode(c.id)
		if err == nil {
			if p := n.peers[pid]; p != nil && busy(p) {
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
			if p := n.peers[pid]; p != nil && !busy(p) {
				n.dropPeerLocked(p)
			}
		}
	}
	n.mu.Unlock()
	n.log.Info("forgot idle peers over the cap", "count", len(forget), "cap", n.opts.MaxIdlePeers)
}
