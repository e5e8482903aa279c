// Package node is the layer applications use: durable, exactly-once,
// in-order messaging between ocap kernels over package transport, with the
// state kept in a data directory (package store).
//
// Send returns once the message is fsync'd in the peer's outbound log (group
// commit). Messages carry sequence numbers and cumulative acknowledgements in
// upstream's envelope (reference §2.4), so a JavaScript kernel can be the
// other end. The receiver delivers only the next sequence number; the sender
// retransmits its unacknowledged window at once after every reconnection and
// after an ack timeout, and never gives up by default. docs/DELIVERY.md states
// the exact guarantee.
//
// Concurrency: Node.mu guards every peer's in-memory state. A peer's sendMu
// (read-locked by Send around its durable append, write-locked by operations
// that renumber or park the log) keeps the in-memory window consistent with
// the store. Every goroutine the node starts is counted by Node.wg and ends by
// Stop.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// Node is a running node. Create it with Start; stop it with Stop.
type Node struct {
	opts  Options
	h     Handler
	log   *slog.Logger
	st    *store.Store
	tr    *transport.Transport
	self  peer.ID
	inc   string
	allow map[peer.ID]bool
	deny  map[peer.ID]bool

	ctx     context.Context
	cancel  context.CancelFunc
	events  *eventQueue
	metrics *metrics

	mu      sync.Mutex
	stopped bool
	peers   map[peer.ID]*peerState
	wg      sync.WaitGroup

	stopOnce sync.Once
	stopErr  error
}

type outMsg struct {
	method string
	params json.RawMessage
}

type peerState struct {
	id  peer.ID
	key string // id.String(), the store's key

	sendMu sync.RWMutex // see the package comment

	// Outbound.
	pending       map[uint64]outMsg // unacknowledged messages by seq
	acked         uint64            // highest seq acknowledged (in memory)
	ackStored     uint64            // highest ack persisted
	lastSeq       uint64            // highest seq durably assigned
	reserved      int               // Sends between window check and append
	parkedTo      uint64            // messages acked+1..parkedTo are parked (0: none)
	next          uint64            // next seq to write
	pumping       bool
	persistingAck bool
	connected     bool
	closed        error // non-nil after Close or closed-by-peer, until Reconnect
	failed        bool
	pinned        bool
	room          chan struct{} // closed when the window gains room
	chGen         uint64        // generation of the channel the pump last wrote on
	rtTimer       *time.Timer
	rtGen         uint64 // identifies the armed rtTimer
	rtRound       int

	// Inbound.
	delivered   uint64 // highest seq handed to the application
	stored      uint64 // highest delivered seq persisted (may be acked)
	intent      uint64 // persisted intent (see store.PeerRecord.Intent)
	redeliverTo uint64 // seqs ≤ this, > stored at load, are redeliveries
	ackSent     uint64 // highest ack written to the peer
	ackTimer    *time.Timer
	ackGen      uint64 // identifies the armed ackTimer
	reAck       bool   // a duplicate arrived: re-send the ack
	gapExpected uint64
	gapSeq      uint64
	gapCount    int
	refused     uint64 // a seq the handler refused (0: none)
	incarnation string
	lastActive  time.Time
}

// Start opens the data directory, loads or creates the identity, starts the
// transport and resumes every conversation left in the log: peers with
// pending messages are dialled at once.
func Start(ctx context.Context, opts Options, h Handler) (*Node, error) {
	opts.setDefaults()
	if opts.Dir == "" {
		return nil, errors.New("node: Options.Dir is required")
	}
	st, err := store.Open(opts.Dir, opts.Store)
	if err != nil {
		return nil, err
	}
	n := &Node{
		opts:  opts,
		h:     h,
		log:   opts.Logger,
		st:    st,
		peers: map[peer.ID]*peerState{},
		allow: map[peer.ID]bool{},
		deny:  map[peer.ID]bool{},
	}
	for _, p := range opts.Allow {
		n.allow[p] = true
	}
	for _, p := range opts.Deny {
		n.deny[p] = true
	}
	id, err := n.loadIdentity()
	if err != nil {
		st.Close()
		return nil, err
	}
	n.inc = id.IncarnationID
	var lastActive time.Time
	if err := st.View(func(tx *store.Tx) error {
		lastActive, err = tx.LastActive()
		return err
	}); err != nil {
		st.Close()
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.events = newEventQueue(h.OnEvent)
	n.metrics = newMetrics(opts.Transport.Metrics)
	n.metrics.window = n.windowTotals

	topts := opts.Transport
	topts.KeySeed, _ = identity.ParseSeedHex(id.KeySeed)
	topts.IncarnationID = id.IncarnationID
	if topts.Logger == nil {
		topts.Logger = opts.Logger
	}
	tr, err := transport.Start(ctx, topts, transport.Handler{
		OnMessage:   n.onFrame,
		OnHandshake: n.onHandshake,
		OnEvent:     n.onTransportEvent,
	})
	if err != nil {
		n.cancel()
		n.events.close()
		st.Close()
		return nil, err
	}
	n.tr = tr
	n.self = tr.PeerID()
	if err := n.resume(lastActive); err != nil {
		n.Stop(context.Background())
		return nil, err
	}
	n.wg.Add(1)
	go n.activityLoop()
	return n, nil
}

func (n *Node) loadIdentity() (store.Identity, error) {
	id, weak, err := LoadIdentity(n.st, n.opts.KeySeed, n.opts.Mnemonic)
	if weak {
		n.log.Warn("key seed is shorter than 64 hex digits: anyone can derive it")
	}
	return id, err
}

// LoadIdentity returns the identity stored in st, creating it on first use
// from seedHex, mnemonic (at most one) or a random seed, with a fresh
// incarnation ID. A seed or mnemonic that gives a different key than the
// stored one is refused with ErrIdentityMismatch. weak reports a seed shorter
// than 64 hex digits. The relay command uses it too.
func LoadIdentity(st *store.Store, seedHex, mnemonic string) (id store.Identity, weak bool, err error) {
	var want *identity.Seed
	switch {
	case seedHex != "" && mnemonic != "":
		return id, false, errors.New("give a key seed or a mnemonic, not both")
	case seedHex != "":
		s, err := identity.ParseSeedHex(seedHex)
		if err != nil {
			return id, false, err
		}
		weak = identity.IsWeakSeedHex(seedHex)
		want = &s
	case mnemonic != "":
		s, err := identity.SeedFromMnemonic(mnemonic)
		if err != nil {
			return id, false, err
		}
		want = &s
	}
	err = st.Update(func(tx *store.Tx) error {
		cur, ok, err := tx.Identity()
		if err != nil {
			return err
		}
		if ok {
			if want != nil && cur.KeySeed != want.Hex() {
				return fmt.Errorf("%w: %s holds peer %s, the given key is peer %s", ErrIdentityMismatch, st.Dir(), cur.PeerID, want.PeerID())
			}
			id = cur
			return nil
		}
		seed := want
		if seed == nil {
			s, err := identity.RandomSeed()
			if err != nil {
				return err
			}
			seed = &s
		}
		id = store.Identity{KeySeed: seed.Hex(), PeerID: seed.PeerID().String(), IncarnationID: identity.NewIncarnationID()}
		return tx.SetIdentity(id)
	})
	return id, weak, err
}

// resume loads every stored peer, dials those with pending messages and
// applies the cross-restart wake rule.
func (n *Node) resume(lastActive time.Time) error {
	now := time.Now().Round(0)
	gap := time.Duration(0)
	if !lastActive.IsZero() {
		gap = now.Sub(lastActive)
	}
	clearFailures := gap > n.opts.ClearFailuresAfter
	type loaded struct {
		id  peer.ID
		rec store.PeerRecord
		out []store.OutRecord
	}
	var all []loaded
	err := n.st.Update(func(tx *store.Tx) error {
		all = all[:0]
		ids, err := tx.PeerIDs()
		if err != nil {
			return err
		}
		for _, s := range ids {
			pid, err := peer.Decode(s)
			if err != nil {
				n.log.Warn("stored peer with an invalid ID: ignored", "peer", s)
				continue
			}
			rec, _, err := tx.Peer(s)
			if err != nil {
				return err
			}
			if clearFailures && !rec.FailedSince.IsZero() {
				rec.FailedSince = time.Time{}
				if err := tx.PutPeer(s, rec); err != nil {
					return err
				}
			}
			out, err := tx.Out(s, rec.Acked+1, 0)
			if err != nil {
				return err
			}
			all = append(all, loaded{pid, rec, out})
		}
		return tx.SetLastActive(now)
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	for _, l := range all {
		p := n.peerLocked(l.id)
		p.acked, p.ackStored, p.lastSeq = l.rec.Acked, l.rec.Acked, l.rec.NextSeq
		p.next = p.acked + 1
		p.delivered, p.stored, p.intent = l.rec.Delivered, l.rec.Delivered, l.rec.Intent
		p.redeliverTo = l.rec.Intent
		p.incarnation = l.rec.Incarnation
		p.lastActive = l.rec.LastActive
		for _, r := range l.out {
			p.pending[r.Seq] = outMsg{r.Method, r.Params}
			if r.Parked {
				p.parkedTo = max(p.parkedTo, r.Seq)
			}
		}
		if len(l.rec.Hints) > 0 {
			n.tr.RegisterHints(l.id, l.rec.Hints...)
		}
		if !l.rec.FailedSince.IsZero() {
			p.failed = true
			n.tr.RestoreFailed(l.id, l.rec.FailedSince)
		}
		n.updatePinLocked(p)
	}
	n.mu.Unlock()
	if clearFailures {
		n.log.Info("started long after last activity: failure states cleared", "gap", gap)
		n.events.push(WakeDetected{Gap: gap, AcrossRestart: true})
	}
	return nil
}

func (n *Node) peerLocked(id peer.ID) *peerState {
	p := n.peers[id]
	if p == nil {
		p = &peerState{id: id, key: id.String(), pending: map[uint64]outMsg{}, room: make(chan struct{})}
		n.peers[id] = p
	}
	return p
}

// PeerID returns this node's peer ID.
func (n *Node) PeerID() peer.ID { return n.self }

// windowTotals sums unacknowledged and parked messages over all peers.
func (n *Node) windowTotals() (unacked, parked float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.peers {
		unacked += float64(p.lastSeq - p.acked)
		if p.parkedTo > p.acked {
			parked += float64(p.parkedTo - p.acked)
		}
	}
	return unacked, parked
}

// IncarnationID returns this data directory's incarnation ID.
func (n *Node) IncarnationID() string { return n.inc }

// Transport returns the underlying transport (addresses, relays, states).
func (n *Node) Transport() *transport.Transport { return n.tr }

// ListenAddrs returns the addresses peers can dial.
func (n *Node) ListenAddrs() []string { return n.tr.ListenAddrs() }

func (n *Node) allowed(id peer.ID) bool {
	if n.deny[id] {
		return false
	}
	return len(n.allow) == 0 || n.allow[id]
}

// maxEnvelopeOverhead bounds the bytes an envelope adds around method and
// params: {"seq":N,"ack":N,"method":"","params":} with 16-digit numbers.
const maxEnvelopeOverhead = 64

// Send appends a message to peer's outbound log and returns its sequence
// number once it is durable (fsync'd). The node then delivers it, in order,
// retransmitting as needed until the peer acknowledges it (an Acknowledged
// event) or the application gives up on it (a GaveUp event). When the
// peer's window is full Send waits for room until ctx ends (ErrWindowFull).
// params must be valid JSON (nil sends no params key). hints are location
// hints for the peer (multiaddrs), kept in the data directory.
func (n *Node) Send(ctx context.Context, to peer.ID, method string, params json.RawMessage, hints ...string) (uint64, error) {
	if err := to.Validate(); err != nil || to == n.self {
		return 0, fmt.Errorf("send to %q: %w", to, transport.ErrInvalidPeer)
	}
	if !n.allowed(to) {
		return 0, fmt.Errorf("send to %s: %w", to, ErrPeerDenied)
	}
	if params != nil && !json.Valid(params) {
		return 0, fmt.Errorf("send to %s: %w: params are not valid JSON", to, ErrInvalidMessage)
	}
	limit := n.tr.MaxMessageSize()
	if size := len(method) + len(params) + maxEnvelopeOverhead; size > limit {
		return 0, fmt.Errorf("send to %s: %w: about %d bytes, limit %d", to, transport.ErrMessageTooLarge, size, limit)
	}
	if len(hints) > 0 {
		n.tr.RegisterHints(to, hints...)
	}

	// Reserve a place in the window.
	n.mu.Lock()
	p := n.peerLocked(to)
	for {
		if n.stopped {
			n.mu.Unlock()
			return 0, ErrStopped
		}
		if p.closed != nil {
			err := p.closed
			n.mu.Unlock()
			return 0, fmt.Errorf("send to %s: %w", to, err)
		}
		if int(p.lastSeq-p.acked)+p.reserved < n.opts.Window {
			break
		}
		room := p.room
		n.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return 0, fmt.Errorf("send to %s: %w (%d unacknowledged): %w", to, ErrWindowFull, n.opts.Window, ctx.Err())
		case <-n.ctx.Done():
			return 0, ErrStopped
		}
		n.mu.Lock()
	}
	p.reserved++
	failed := p.failed
	n.mu.Unlock()
	if failed {
		// A send clears a failed state (the transport retries at once).
		_ = n.tr.Reconnect(to)
	}

	p.sendMu.RLock()
	var seq uint64
	key := p.key
	rec := store.OutRecord{Method: method, Params: params, At: time.Now().Round(0).UTC()}
	err := n.st.Update(func(tx *store.Tx) error {
		if len(hints) > 0 {
			pr, _, err := tx.Peer(key)
			if err != nil {
				return err
			}
			pr.Hints = mergeHints(pr.Hints, hints)
			if err := tx.PutPeer(key, pr); err != nil {
				return err
			}
		}
		var err error
		seq, err = tx.AppendOut(key, rec)
		return err
	})
	n.mu.Lock()
	p.reserved--
	if err == nil {
		n.metrics.sends.Inc()
		p.pending[seq] = outMsg{method, params}
		p.lastSeq = max(p.lastSeq, seq)
		n.updatePinLocked(p)
		n.kickLocked(p)
	}
	n.mu.Unlock()
	p.sendMu.RUnlock()
	if err != nil {
		return 0, fmt.Errorf("send to %s: %w", to, err)
	}
	return seq, nil
}

// maxHints caps the stored location hints per peer (upstream keeps them
// unbounded, W16).
const maxHints = 16

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

// outstandingLocked: unacknowledged messages that are not parked.
func (p *peerState) outstandingLocked() bool {
	return p.lastSeq > max(p.acked, p.parkedTo)
}

// updatePinLocked keeps the transport connected to peers with work.
func (n *Node) updatePinLocked(p *peerState) {
	want := p.outstandingLocked() && p.closed == nil
	if want != p.pinned && !n.stopped {
		p.pinned = want
		n.tr.SetPinned(p.id, want)
	}
}

// enter registers a goroutine of the node; false after Stop began.
func (n *Node) enterLocked() bool {
	if n.stopped {
		return false
	}
	n.wg.Add(1)
	return true
}

// kickLocked starts p's pump if it has something to write.
func (n *Node) kickLocked(p *peerState) {
	if p.pumping || !p.connected || p.closed != nil {
		return
	}
	if p.next <= max(p.acked, p.parkedTo) {
		p.next = max(p.acked, p.parkedTo) + 1
	}
	if _, ok := p.pending[p.next]; !ok {
		return
	}
	if !n.enterLocked() {
		return
	}
	p.pumping = true
	go n.pump(p)
}

// pump writes p's window in order from p.next while the channel is open.
func (n *Node) pump(p *peerState) {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		if p.next <= max(p.acked, p.parkedTo) {
			p.next = max(p.acked, p.parkedTo) + 1
		}
		m, ok := p.pending[p.next]
		if n.stopped || !p.connected || p.closed != nil || !ok {
			p.pumping = false
			n.mu.Unlock()
			return
		}
		seq, ack, gen := p.next, p.stored, p.chGen
		n.mu.Unlock()

		frame, err := wire.EncodeEnvelope(wire.Envelope{Seq: seq, Ack: ack, Method: m.method, Params: m.params})
		var wrote uint64
		if err == nil {
			wrote, err = n.tr.TrySendOn(n.ctx, p.id, frame, gen)
		}
		n.mu.Lock()
		if errors.Is(err, transport.ErrChannelChanged) {
			// The channel was replaced: what we wrote on the old one may
			// never be read. Resend from the last acknowledgement on the
			// new one before anything newer, so a receiver that accepts
			// gaps (JavaScript kernels, W1) does not skip those messages.
			p.chGen = wrote
			p.next = max(p.acked, p.parkedTo) + 1
			n.metrics.retransmits.Inc()
			n.mu.Unlock()
			continue
		}
		if err == nil {
			p.chGen = wrote
		}
		if err != nil {
			p.pumping = false
			if errors.Is(err, transport.ErrNotConnected) {
				p.connected = false
			} else if !errors.Is(err, transport.ErrStopped) && n.ctx.Err() == nil {
				n.log.Debug("write failed; the window is resent on reconnection", "peer", p.id, "seq", seq, "err", err)
			}
			n.mu.Unlock()
			return
		}
		p.ackSent = max(p.ackSent, ack)
		if p.next == seq {
			p.next++
		}
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
	p.rtGen++
	gen := p.rtGen
	p.rtTimer = time.AfterFunc(d, func() { n.retransmitDue(p, gen) })
}

// retransmitDue runs when no acknowledgement advanced for an ack timeout.
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
	if !p.connected {
		// Reconnection resends the window; the timer restarts then.
		n.mu.Unlock()
		return
	}
	p.rtRound++
	if n.opts.MaxRetransmits > 0 && p.rtRound > n.opts.MaxRetransmits {
		n.mu.Unlock()
		n.giveUp(p, fmt.Errorf("%w after %d retransmissions", ErrNotAcknowledged, n.opts.MaxRetransmits))
		return
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
		n.log.Warn("peer acknowledged messages never sent: clamped", "peer", p.id, "ack", a, "last", p.lastSeq)
		a = p.lastSeq
	}
	if a <= p.acked {
		return
	}
	from := p.acked + 1
	for s := from; s <= a; s++ {
		delete(p.pending, s)
	}
	n.metrics.acked.Add(float64(a - from + 1))
	p.acked = a
	if p.parkedTo <= a {
		p.parkedTo = 0
	}
	close(p.room)
	p.room = make(chan struct{})
	p.rtRound = 0
	n.armRetransmitLocked(p, true)
	n.updatePinLocked(p)
	n.events.push(Acknowledged{Peer: p.id, From: from, To: a})
	if !p.persistingAck && n.enterLocked() {
		p.persistingAck = true
		go n.persistAcks(p)
	}
}

// persistAcks writes p's acknowledgement to the log (deleting acknowledged
// messages) until it has caught up. Losing it in a crash only means those
// messages are resent and dropped as duplicates by the peer.
func (n *Node) persistAcks(p *peerState) {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		a := p.acked
		if a <= p.ackStored || n.stopped {
			p.persistingAck = false
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
		err := n.st.Update(func(tx *store.Tx) error {
			_, err := tx.Ack(p.id.String(), a)
			return err
		})
		n.mu.Lock()
		if err != nil {
			p.persistingAck = false
			n.mu.Unlock()
			n.log.Error("persisting an acknowledgement failed; retried on the next one", "peer", p.id, "err", err)
			return
		}
		p.ackStored = max(p.ackStored, a)
		n.mu.Unlock()
	}
}
