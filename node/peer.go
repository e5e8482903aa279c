package node

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

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
	// inbound state when the peer restarted.
	recvMu sync.Mutex

	// Outbound, guarded by Node.mu.
	pending       map[uint64]outMsg // unacknowledged messages by seq
	acked         uint64            // highest seq acknowledged (in memory)
	ackStored     uint64            // highest ack persisted
	lastSeq       uint64            // highest seq durably assigned
	reserved      int               // Sends between window check and append
	waiting       int               // Sends waiting for room in the window
	parkedTo      uint64            // messages acked+1..parkedTo are parked (0: none)
	next          uint64            // next seq to write
	pumping       bool              // the pump goroutine runs
	chGen         uint64            // generation of the channel the pump writes on (from OnChannel)
	persistingAck bool              // the ack persister runs
	pinned        bool              // what we asked of the transport with SetPinned
	room          chan struct{}     // closed (and replaced) when the window gains room
	rtTimer       *time.Timer       // the ack timeout
	rtGen         uint64            // identifies the armed rtTimer
	rtRound       int               // retransmissions without progress
	waitingSince  time.Time         // when the current wait for an acknowledgement began
	stalled       bool              // reported Stalled, not yet StallEnded

	// Inbound, guarded by Node.mu (and written only with recvMu held).
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
	incarnation string // the peer's incarnation as persisted
	lastActive  time.Time
}

// peerLocked returns id's state, creating it. A new state starts writing on
// the peer's open channel, if it has one (a peer whose state was dropped from
// memory while connected); onChannel reports later ones.
func (n *Node) peerLocked(id peer.ID) *peerState {
	p := n.peers[id]
	if p == nil {
		p = &peerState{id: id, key: id.String(), pending: map[uint64]outMsg{}, room: make(chan struct{})}
		p.chGen = n.tr.Peer(id).Gen
		n.peers[id] = p
	}
	return p
}

// peer returns id's state, creating it, or nil once Stop began.
func (n *Node) peer(id peer.ID) *peerState {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil
	}
	return n.peerLocked(id)
}

// outstandingLocked: unacknowledged messages that are not parked.
func (p *peerState) outstandingLocked() bool {
	return p.lastSeq > max(p.acked, p.parkedTo)
}

// roomLocked wakes every Send waiting for room in p's window. Call it
// whenever the window's use (lastSeq - acked + reserved) shrinks.
func (p *peerState) roomLocked() {
	close(p.room)
	p.room = make(chan struct{})
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
