package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// maxHints caps the stored location hints per peer (upstream keeps them
// unbounded, W16).
const maxHints = 16

// Outgoing is one message to send.
type Outgoing struct {
	To     peer.ID
	Method string
	// Params must be valid JSON; nil sends no params key.
	Params json.RawMessage
	// Hints are location hints for the peer (multiaddrs), kept in the data
	// directory.
	Hints []string
	// Tag is the caller's opaque identifier of the message (valid JSON, or
	// nil): it is kept with the message in the data directory and comes
	// back in the Acknowledged or GaveUp event that settles it, also after a
	// restart.
	Tag json.RawMessage
}

// Send appends a message to peer's outbound log and returns its sequence
// number once it is durable (fsync'd); see SendMessage.
func (n *Node) Send(ctx context.Context, to peer.ID, method string, params json.RawMessage, hints ...string) (uint64, error) {
	return n.SendMessage(ctx, Outgoing{To: to, Method: method, Params: params, Hints: hints})
}

// SendMessage appends m to its peer's outbound log and returns its sequence
// number once it is durable (fsync'd). The node then delivers it, in order,
// retransmitting as needed until the peer acknowledges it (an Acknowledged
// event) or the application gives up on it (a GaveUp event). When the
// peer's window is full SendMessage waits for room until ctx ends
// (ErrWindowFull). A message is refused, and nothing is stored, if the
// link to the peer is closed (transport.ErrIntentionallyClosed,
// transport.ErrClosedByPeer), the node is stopping, or the message is
// invalid; a message accepted before a Close is parked by that Close.
func (n *Node) SendMessage(ctx context.Context, m Outgoing) (uint64, error) {
	r := n.SendBatch(ctx, []Outgoing{m})[0]
	return r.Seq, r.Err
}

// checkOutgoing validates m once: the pump and every retransmission trust
// it afterwards.
func (n *Node) checkOutgoing(m Outgoing) error {
	to := m.To
	if err := to.Validate(); err != nil || to == n.self {
		return fmt.Errorf("send to %q: %w", to, transport.ErrInvalidPeer)
	}
	if !n.allowed(to) {
		return fmt.Errorf("send to %s: %w", to, ErrPeerDenied)
	}
	if err := wire.ValidateParams(m.Params); err != nil {
		return fmt.Errorf("send to %s: %w: params are not valid JSON", to, ErrInvalidMessage)
	}
	if m.Tag != nil && !json.Valid(m.Tag) {
		return fmt.Errorf("send to %s: %w: tag is not valid JSON", to, ErrInvalidMessage)
	}
	if !n.knownHints(to, m.Hints) {
		n.hintWork.Add(1)
		if err := transport.CheckHints(to, m.Hints); err != nil {
			return err
		}
	}
	// The exact check, with the sequence number, is made when it is
	// assigned (checkSize); this one refuses what can never fit.
	return n.checkSize(m, 1)
}

// checkSize applies the size rule (docs/PROTOCOL.md "Message size"): a
// message is accepted when its envelope with its own sequence number and no
// acknowledgement fits the frame limit. The pump leaves the piggybacked
// acknowledgement out of a frame it would push over the limit (a standalone
// ack follows), so a message that was accepted always fits, whatever the
// acknowledgement at the time it is (re)sent.
func (n *Node) checkSize(m Outgoing, seq uint64) error {
	limit := n.tr.MaxMessageSize()
	if size := wire.EnvelopeSize(wire.Envelope{Seq: seq, Method: m.Method, Params: m.Params}); size > limit {
		return fmt.Errorf("send to %s: %w: the frame would be %d bytes, limit %d", m.To, transport.ErrMessageTooLarge, size, limit)
	}
	return nil
}

// errEvicted: the peer's state was dropped from memory while a caller
// held it; the caller looks it up again.
var errEvicted = errors.New("peer state evicted")

// reservePeer loads id's state and takes a place in its window, waiting for
// room until ctx ends. A reservation keeps the state in memory.
func (n *Node) reservePeer(ctx context.Context, id peer.ID) (*peerState, error) {
	for {
		p := n.peer(id)
		if p == nil {
			return nil, ErrStopped
		}
		err := n.reserve(ctx, p)
		if !errors.Is(err, errEvicted) {
			return p, err
		}
	}
}

// reserve takes a place in p's window, waiting for room until ctx ends.
func (n *Node) reserve(ctx context.Context, p *peerState) error {
	n.mu.Lock()
	for {
		if n.stopped {
			n.mu.Unlock()
			return ErrStopped
		}
		if p.evicted {
			n.mu.Unlock()
			return errEvicted
		}
		if int(p.lastSeq-p.acked)+p.reserved < n.opts.Window {
			break
		}
		room := p.room
		p.waiting++
		n.mu.Unlock()
		var err error
		select {
		case <-room:
		case <-ctx.Done():
			err = fmt.Errorf("send to %s: %w (window %d): %w", p.id, ErrWindowFull, n.opts.Window, ctx.Err())
		case <-n.ctx.Done():
			err = ErrStopped
		}
		n.mu.Lock()
		p.waiting--
		if err != nil {
			n.mu.Unlock()
			return err
		}
	}
	p.reserved++
	n.mu.Unlock()
	return nil
}

// unreserve gives back a place reserve took, waking a Send waiting for it.
func (n *Node) unreserve(p *peerState) {
	n.mu.Lock()
	p.reserved--
	p.roomLocked()
	n.mu.Unlock()
}

func mergeHints(old, add []string) []string {
	out := slices.Clone(old)
	for _, h := range add {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	if len(out) > maxHints {
		out = out[len(out)-maxHints:]
	}
	return out
}

// Result is the outcome of one message of a SendBatch.
type Result struct {
	Seq uint64
	Err error
}

// SendBatch sends a batch of messages, possibly to several peers, in one
// group commit: each message is appended to its peer's log in batch order
// (so per-peer order is the batch's), and SendBatch returns once every
// accepted message is durable. Results[i] is ms[i]'s sequence number or the
// error that refused it, as SendMessage would report it; a refused message
// does not stop the others. When a peer's window is full, SendBatch waits
// for room (ctx bounds the wait, as for SendMessage).
func (n *Node) SendBatch(ctx context.Context, ms []Outgoing) []Result {
	res := make([]Result, len(ms))
	type accepted struct {
		i     int
		p     *peerState
		hints bool // new hints to store
	}
	// Reserve every place in the windows first, holding no lock (a wait for
	// room must not hold up a Close or Discard), then take the send locks of
	// the batch's peers in peer ID order, admit and append.
	var reserved []accepted
	for i, m := range ms {
		if err := n.checkOutgoing(m); err != nil {
			res[i].Err = err
			continue
		}
		p, err := n.reservePeer(ctx, m.To)
		if err != nil {
			res[i].Err = err
			continue
		}
		reserved = append(reserved, accepted{i: i, p: p})
	}
	var peers []*peerState
	for _, a := range reserved {
		if !slices.Contains(peers, a.p) {
			peers = append(peers, a.p)
		}
	}
	slices.SortFunc(peers, func(a, b *peerState) int { return strings.Compare(a.key, b.key) })
	for _, p := range peers {
		p.sendMu.RLock()
		defer p.sendMu.RUnlock()
	}
	var ok []accepted
	for _, a := range reserved {
		m := ms[a.i]
		// Admission under sendMu: a Close (which parks under sendMu's
		// write lock) either finds this message in the log or refuses it
		// here.
		if err := n.tr.Admit(m.To); err != nil {
			n.unreserve(a.p)
			res[a.i].Err = fmt.Errorf("send to %s: %w", m.To, err)
			continue
		}
		if a.hints = n.newHints(a.p, m.Hints); a.hints {
			n.hintWork.Add(1)
			if err := n.tr.RegisterHints(m.To, m.Hints...); err != nil {
				n.unreserve(a.p)
				res[a.i].Err = err
				continue
			}
		}
		ok = append(ok, a)
	}
	if len(ok) == 0 {
		return res
	}
	incs := map[*peerState]string{}
	legs := map[*peerState]bool{}
	n.mu.Lock()
	for _, p := range peers {
		if !p.incStored && p.incarnation != "" {
			incs[p] = p.incarnation
		}
		if !p.legacyStored {
			legs[p] = p.legacy
		}
	}
	n.mu.Unlock()
	at := time.Now().Round(0).UTC()
	merged := map[*peerState][]string{}
	err := n.st.Update(func(tx *store.Tx) error {
		clear(merged)
		for _, a := range ok {
			m := ms[a.i]
			pr, _, err := tx.Peer(a.p.key)
			if err != nil {
				return err
			}
			changed := false
			if inc, ok := incs[a.p]; ok && pr.Incarnation == "" {
				pr.Incarnation, changed = inc, true
			}
			if l, ok := legs[a.p]; ok && pr.Legacy != l {
				pr.Legacy, changed = l, true
			}
			if a.hints {
				pr.Hints, changed = mergeHints(pr.Hints, m.Hints), true
				merged[a.p] = pr.Hints
			}
			if changed {
				if err := tx.PutPeer(a.p.key, pr); err != nil {
					return err
				}
			}
			if err := n.checkSize(m, pr.NextSeq+1); err != nil {
				res[a.i] = Result{Err: err} // this one alone is refused
				continue
			}
			seq, err := tx.AppendOut(a.p.key, store.OutRecord{Method: m.Method, Params: m.Params, Tag: m.Tag, At: at})
			if err != nil {
				return err
			}
			res[a.i] = Result{Seq: seq}
		}
		return nil
	})
	n.mu.Lock()
	defer n.mu.Unlock()
	// The store assigns sequence numbers in commit order, but concurrent
	// batches reach this point in any order: a later one's higher seq may
	// be counted (lastSeq) while an earlier one still holds its
	// reservation, so the window's use can shrink when the earlier one
	// ends. Waiters are woken whenever it does.
	use := map[*peerState]int{}
	for _, p := range peers {
		use[p] = int(p.lastSeq-p.acked) + p.reserved
	}
	defer func() {
		for _, p := range peers {
			if int(p.lastSeq-p.acked)+p.reserved < use[p] {
				p.roomLocked()
			}
		}
	}()
	for _, a := range ok {
		a.p.reserved--
		if err != nil || res[a.i].Err != nil {
			if err != nil {
				res[a.i] = Result{Err: fmt.Errorf("send to %s: %w", ms[a.i].To, err)}
			}
			continue
		}
		m := ms[a.i]
		n.metrics.sends.Inc()
		n.cacheLocked(a.p, res[a.i].Seq, outMsg{m.Method, m.Params, m.Tag})
		a.p.lastSeq = max(a.p.lastSeq, res[a.i].Seq)
	}
	if err == nil {
		for p, inc := range incs {
			p.incStored = p.incStored || p.incarnation == inc
		}
		for p, l := range legs {
			p.legacyStored = p.legacyStored || p.legacy == l
		}
		for p, h := range merged {
			p.hints = h
		}
		for _, p := range peers {
			n.updatePinLocked(p)
			n.kickLocked(p)
		}
	}
	return res
}

// newHints reports whether hints holds one not yet stored for p (hints are
// registered and stored only when new: a sender that passes the same hint
// with every message pays for it once).
func (n *Node) newHints(p *peerState, hints []string) bool {
	if len(hints) == 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.newHintsLocked(p, hints)
}

// knownHints reports whether every hint is already among the peer's (in
// memory): those were checked when they were first given, so a Send that
// repeats its peer's hints does not parse them again.
func (n *Node) knownHints(id peer.ID, hints []string) bool {
	if len(hints) == 0 {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[id]
	return p != nil && !n.newHintsLocked(p, hints)
}

func (n *Node) newHintsLocked(p *peerState, hints []string) bool {
	for _, h := range hints {
		if !slices.Contains(p.hints, h) {
			return true
		}
	}
	return false
}
