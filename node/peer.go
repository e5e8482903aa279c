package node

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
)

// The node's peer table is a cache over the store: a peer's state is loaded
// on first contact and, once it has nothing in flight, may be dropped from
// memory (idle.go); everything that matters for correctness (delivered
// position, intent, incarnation, outbound log and its counters) is on disk
// before that, so the next contact reloads it. Likewise a peer's
// unacknowledged messages are paged from the log: at most a window's worth
// of them (Options.Window) are in memory, and the pump reads pageSize at a
// time; a node that starts with a million pending messages reads none of
// them until a peer's channel is up.
const pageSize = 256

// outMsg is an unacknowledged message kept in memory for the pump.
type outMsg struct {
	method string
	params json.RawMessage
	tag    json.RawMessage
}

// peerState is the node's delivery state for one peer: sequence numbers,
// acknowledgements, the window, parked messages, inbound positions and the
// peer's persisted incarnation. Link state (channel, attempts, closed,
// failed) belongs to the transport and is never copied here.
type peerState struct {
	id  peer.ID
	key string // id.String(), the store's key

	// sendMu is read-locked by Send around its admission check and durable
	// append, and write-locked by operations that park, renumber or delete
	// the log (give-up, restart, Resend, Discard, Forget), so that a Send is
	// either in the log before such an operation or refused after it.
	sendMu sync.RWMutex
	// recvMu serialises inbound processing (onFrame) with the reset of the
	// inbound state when the peer restarted. The background writers of
	// inbound state (flushAck, the intent reservations made ahead) do not
	// take it: they check the inbound epoch (and the stored incarnation)
	// instead, so that the read loop never waits for their fsyncs.
	recvMu sync.Mutex

	// Guarded by Node.mu.
	evicted bool // dropped from memory; callers holding it must look again
	work    int  // goroutines working on it (pump, ack persister, intent, ack flush)

	// Outbound, guarded by Node.mu.
	pending       map[uint64]outMsg // a cache of unacknowledged messages by seq (at most Window)
	acked         uint64            // highest seq acknowledged (in memory)
	ackStored     uint64            // highest ack persisted (and reported in Acknowledged)
	lastSeq       uint64            // highest seq durably assigned
	reserved      int               // Sends between window check and append
	waiting       int               // Sends waiting for room in the window
	parkedTo      uint64            // messages acked+1..parkedTo are parked (0: none)
	next          uint64            // next seq to write
	pumping       bool              // the pump goroutine runs
	chGen         uint64            // generation of the channel the pump writes on (from OnChannel)
	persistingAck bool              // the ack persister runs
	pinned        bool              // what we asked of the transport with SetPinned
	hints         []string          // the hints stored for the peer
	room          chan struct{}     // closed (and replaced) when the window gains room
	rtTimer       *time.Timer       // the ack timeout
	rtGen         uint64            // identifies the armed rtTimer
	rtRound       int               // retransmissions without progress
	waitingSince  time.Time         // when the current wait for an acknowledgement began
	stalled       bool              // reported Stalled, not yet StallEnded

	// Inbound, guarded by Node.mu (and written by onFrame with recvMu held,
	// by flushAck and the reservations ahead after an epoch check).
	delivered   uint64        // highest seq handed to the application
	stored      uint64        // highest delivered seq persisted (may be acked)
	intent      uint64        // persisted intent (see store.PeerRecord.Intent)
	intentBatch uint64        // current reservation size (receive.go)
	reservedAt  time.Time     // when the last reservation ahead started
	reserving   chan struct{} // closed when the reservation ahead in flight ends (nil: none)
	redeliverTo uint64        // seqs ≤ this, > stored at load, are redeliveries
	ackSent     uint64        // highest ack written to the peer
	ackTimer    *time.Timer
	ackGen      uint64 // identifies the armed ackTimer
	reAck       bool   // a duplicate arrived: re-send the ack
	gapExpected uint64
	gapSeq      uint64
	gapCount    int
	refused     uint64 // a seq the handler refused (0: none)
	inEpoch     uint64 // bumped when the inbound state is reset (peer restart)
	incarnation string // the peer's incarnation (persisted once there is state to protect, incStored)
	incStored   bool
	// legacy: the peer's channel lacks the close feature (a JavaScript
	// kernel); persisted with the next record write (legacyStored), so that
	// a restart can give it a channel (docs/PROTOCOL.md).
	legacy, legacyStored bool
	lastActive           time.Time
}

// newPeerState makes the in-memory state of a peer from its stored record
// (ok false: none), writing on the channel of generation gen if it is open.
func newPeerState(id peer.ID, rec store.PeerRecord, ok bool, gen uint64) *peerState {
	p := &peerState{id: id, key: id.String(), pending: map[uint64]outMsg{}, room: make(chan struct{}), chGen: gen}
	if !ok {
		return p
	}
	p.acked, p.ackStored, p.lastSeq = rec.Acked, rec.Acked, rec.NextSeq
	if rec.ParkedTo > rec.Acked {
		p.parkedTo = rec.ParkedTo
	}
	p.next = rec.SendFrom()
	p.delivered, p.stored, p.intent = rec.Delivered, rec.Delivered, rec.Intent
	p.redeliverTo = rec.Intent
	p.incarnation, p.incStored = rec.Incarnation, rec.Incarnation != ""
	p.legacy, p.legacyStored = rec.Legacy, true
	p.lastActive = rec.LastActive
	p.hints = slices.Clone(rec.Hints)
	return p
}

// peer returns id's state, loading it from the store if it is not in
// memory, or nil once Stop began (or if the store cannot be read: logged).
func (n *Node) peer(id peer.ID) *peerState {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	if p := n.peers[id]; p != nil {
		n.mu.Unlock()
		return p
	}
	n.mu.Unlock()
	var rec store.PeerRecord
	var ok bool
	if err := n.st.View(func(tx *store.Tx) (err error) {
		rec, ok, err = tx.Peer(id.String())
		return err
	}); err != nil {
		if !errors.Is(err, store.ErrClosed) {
			n.log.Error("loading a peer's state failed", "peer", id, "err", err)
		}
		return nil
	}
	gen := n.tr.Peer(id).Gen
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil
	}
	if p := n.peers[id]; p != nil {
		return p // loaded meanwhile
	}
	p := newPeerState(id, rec, ok, gen)
	n.peers[id] = p
	n.metrics.loads.Inc()
	if ok && len(rec.Hints) > 0 {
		if err := n.tr.RegisterHints(id, rec.Hints...); err != nil {
			n.log.Warn("stored hints are not valid multiaddrs: ignored", "peer", id, "err", err)
		}
	}
	return p
}

// Which per-peer locks lockPeer takes.
const (
	lockRecv      = 1 << iota // recvMu
	lockSendRead              // sendMu, read
	lockSendWrite             // sendMu, write
)

// lockPeer returns id's state with the given per-peer locks held (in the
// lock order: recvMu, then sendMu), and the function that releases them.
// If the state was dropped from memory before the locks were taken, it
// looks again. It returns nil once Stop began.
func (n *Node) lockPeer(id peer.ID, locks int) (*peerState, func()) {
	for {
		p := n.peer(id)
		if p == nil {
			return nil, func() {}
		}
		if locks&lockRecv != 0 {
			p.recvMu.Lock()
		}
		switch {
		case locks&lockSendWrite != 0:
			p.sendMu.Lock()
		case locks&lockSendRead != 0:
			p.sendMu.RLock()
		}
		unlock := func() {
			switch {
			case locks&lockSendWrite != 0:
				p.sendMu.Unlock()
			case locks&lockSendRead != 0:
				p.sendMu.RUnlock()
			}
			if locks&lockRecv != 0 {
				p.recvMu.Unlock()
			}
		}
		n.mu.Lock()
		evicted := p.evicted
		n.mu.Unlock()
		if !evicted {
			return p, unlock
		}
		unlock()
	}
}

// heldLocked: p has parked messages, which hold back every later message
// until Resend or Discard (docs/DELIVERY.md), so that a reconnection
// cannot send later messages past them (the receiver would take the parked
// numbers for a gap).
func (p *peerState) heldLocked() bool { return p.parkedTo > p.acked }

// outstandingLocked: unacknowledged messages that are in flight (neither
// parked nor held back behind parked ones).
func (p *peerState) outstandingLocked() bool {
	return !p.heldLocked() && p.lastSeq > max(p.acked, p.parkedTo)
}

// roomLocked wakes every Send waiting for room in p's window. Call it
// whenever the window's use (lastSeq - acked + reserved) shrinks.
func (p *peerState) roomLocked() {
	close(p.room)
	p.room = make(chan struct{})
}

// cacheLocked keeps an appended message in memory if the cache has room;
// otherwise the pump reads it from the log when its turn comes.
func (n *Node) cacheLocked(p *peerState, seq uint64, m outMsg) {
	if len(p.pending) < n.opts.Window {
		p.pending[seq] = m
	}
}

// updatePinLocked keeps the transport connected to peers with outstanding
// work.
func (n *Node) updatePinLocked(p *peerState) {
	want := p.outstandingLocked()
	if want != p.pinned && !n.stopped {
		p.pinned = want
		n.tr.SetPinned(p.id, want)
	}
}

// enterLocked counts a goroutine of the node in wg; false after Stop began.
func (n *Node) enterLocked() bool {
	if n.stopped {
		return false
	}
	n.wg.Add(1)
	return true
}

// startWorkLocked counts a goroutine working on p (it keeps p in memory)
// and in wg; false after Stop began. The goroutine calls n.endWork(p).
func (n *Node) startWorkLocked(p *peerState) bool {
	if !n.enterLocked() {
		return false
	}
	p.work++
	return true
}

// endWork is the end of a goroutine started with startWorkLocked.
func (n *Node) endWork(p *peerState) {
	n.mu.Lock()
	p.work--
	n.mu.Unlock()
	n.wg.Done()
}
