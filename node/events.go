package node

import (
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/transport"
)

// Message is one inbound application message.
type Message struct {
	From   peer.ID
	Seq    uint64
	Method string
	Params json.RawMessage
	// Redelivery is true when the message may have been handed to the
	// application before, by a process that crashed before recording its
	// delivery. Messages are otherwise delivered exactly once, in order.
	Redelivery bool
}

// Handler receives what the node delivers. Every field is optional.
type Handler struct {
	// OnMessage is called for each message in order, one at a time per
	// peer, from that peer's read loop (a slow handler slows that peer
	// down, never drops). The message counts as delivered when it returns
	// nil. An error refuses it: it is not acknowledged, nothing after it
	// from that peer is delivered, and the sender's next retransmission
	// offers it again.
	OnMessage func(Message) error
	// OnEvent receives events in order from one goroutine.
	OnEvent func(Event)
}

// Event is one of Acknowledged, GaveUp, Gap, PeerRestarted, Stalled,
// StallEnded, StateChanged, WakeDetected.
type Event interface{ event() }

// Acknowledged reports that the peer acknowledged messages From..To
// (inclusive): they were delivered to its application and recorded.
type Acknowledged struct {
	Peer     peer.ID
	From, To uint64
	// Tags holds, by sequence number, the tag of every message in From..To
	// that was sent with one (nil when none was).
	Tags map[uint64]json.RawMessage
}

// Undelivered is a message handed back in a GaveUp event (or listed by
// Parked or Forget).
type Undelivered struct {
	Seq    uint64
	Method string
	Params json.RawMessage
	Tag    json.RawMessage
}

// GaveUp reports that the node stopped sending the listed messages: Reason
// wraps transport.ErrIntentionallyClosed, transport.ErrClosedByPeer,
// transport.ErrPeerRestarted, transport.ErrRetriesExhausted or
// ErrNotAcknowledged. The messages stay parked in the outbound log, holding
// back later messages to the peer, until the application calls Resend or
// Discard.
type GaveUp struct {
	Peer     peer.ID
	Reason   error
	Messages []Undelivered
}

// Gap reports that the peer's sequence skipped From..To for good (a sender
// that gave up on them) and that the node accepted the gap after
// GapTolerance receptions of the next message.
type Gap struct {
	Peer     peer.ID
	From, To uint64
}

// PeerRestarted reports that the peer's incarnation changed: its state was
// lost, the inbound state was reset and undelivered messages were handed
// back in a GaveUp event.
type PeerRestarted struct {
	Peer              peer.ID
	Previous, Current string
}

// Stalled reports a peer whose link is up but that has acknowledged nothing
// for Rounds ack timeouts while Unacked messages were outstanding, since
// Since. It is repeated at every further timeout while it lasts (the
// timeouts double up to AckTimeoutMax), and StallEnded follows when
// acknowledgements resume. A JavaScript kernel that closed the link on its
// side reads our messages and acknowledges none (it sends no close signal).
type Stalled struct {
	Peer    peer.ID
	Unacked int
	Since   time.Time
	Rounds  int
}

// StallEnded reports that a stalled peer acknowledged again (or that the
// node gave up on it, or it restarted), after Duration.
type StallEnded struct {
	Peer     peer.ID
	Duration time.Duration
}

// StateChanged reports a peer's new connection state.
type StateChanged struct{ Peer transport.PeerInfo }

// WakeDetected reports a wall-clock jump: a sleep while running, or, with
// AcrossRestart, a start long after the node was last active. Backoffs and
// failure states were reset.
type WakeDetected struct {
	Gap           time.Duration
	AcrossRestart bool
}

func (Acknowledged) event()  {}
func (GaveUp) event()        {}
func (Gap) event()           {}
func (PeerRestarted) event() {}
func (Stalled) event()       {}
func (StallEnded) event()    {}
func (StateChanged) event()  {}
func (WakeDetected) event()  {}

// PeerStatus is a snapshot of one peer relationship: the transport's view of
// the link and the node's view of delivery.
type PeerStatus struct {
	transport.PeerInfo
	// NextSeq is the last outbound sequence number assigned, Acked the
	// highest acknowledged, Unacked how many are in the window, Parked how
	// many wait for Resend or Discard.
	NextSeq, Acked uint64
	Unacked        int
	Parked         int
	// Waiting is how many Sends wait for room in the window.
	Waiting int
	// StalledSince is when the peer stopped acknowledging, if it is
	// reported Stalled (zero otherwise).
	StalledSince time.Time
	// Delivered is the highest inbound sequence number delivered.
	Delivered uint64
}
