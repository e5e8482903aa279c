package transport

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Handler is how the layer above (package node, or an application) hears
// from the transport. Every field is optional.
//
// OnHandshake, OnChannel and OnLinkEnded are called synchronously by the
// goroutine that made the change, never with the transport's mutex held, and
// in order for each peer (OnChannel and OnLinkEnded are serialised per peer,
// with the peer's link lock held): when they return, the layer above has
// taken the change into account. This is the handoff between the owner of
// link state (the transport) and the owner of delivery state (the layer
// above): the layer above never mirrors link state; it learns of every new
// channel with its generation and writes with TrySendOn(gen), which refuses a
// stale generation. OnEvent is informational and asynchronous.
type Handler struct {
	// OnMessage is called for every inbound application frame, one at a
	// time per peer and in the order the peer wrote them, from that peer's
	// read loop: while it runs, reads from that peer pause (backpressure).
	// msg is owned by the callee.
	OnMessage func(from peer.ID, msg []byte)

	// OnHandshake is called after every successful handshake, before the
	// new channel carries any application frame. The layer above decides,
	// from the state it persisted, whether the peer's incarnation changed
	// and resets what it must before returning; restarted is only logged
	// here. A non-nil error rejects the channel (it is closed and counted as
	// a failed handshake).
	OnHandshake func(p peer.ID, incarnationID string) (restarted bool, err error)

	// OnChannel is called when a channel to p is registered, with its
	// generation, before the transport reads from it. Frames the layer above
	// wrote on an older generation may never be read by the peer (a
	// JavaScript peer closes a replaced stream and then accepts the gap), so
	// a layer that numbers its frames resends from its last acknowledgement
	// on the new generation.
	OnChannel func(p peer.ID, gen uint64)

	// OnLinkEnded is called when the transport stops trying to reach p:
	// reason wraps ErrIntentionallyClosed (Close), ErrClosedByPeer (the peer
	// closed the link on purpose) or ErrRetriesExhausted
	// (MaxRetryAttempts). Sends to p are refused from the moment it is
	// called, and after Close it has returned before Close returns.
	OnLinkEnded func(p peer.ID, reason error)

	// Known reports whether the layer above knows p (it keeps durable state
	// for it, or exchanged traffic with it recently). When every channel
	// slot is taken, a known peer is never locked out by identities nobody
	// knows (see admission.go). It is called without locks and should be
	// quick (a read of persisted state is fine). Nil: nobody is known.
	Known func(p peer.ID) bool

	// OnEvent receives StateChanged and WakeDetected events in the order
	// they happened, from one goroutine. A slow OnEvent delays later events,
	// never the network.
	OnEvent func(Event)
}

// Event is one of StateChanged or WakeDetected.
type Event interface{ isEvent() }

// StateChanged reports a peer's new state.
type StateChanged struct {
	Peer PeerInfo
}

// WakeDetected reports a wall-clock jump larger than the detector's
// threshold: the machine probably slept. All backoffs were reset and
// reconnection attempts started at once.
type WakeDetected struct {
	// Gap is the wall-clock time between the last two readings.
	Gap time.Duration
}

func (StateChanged) isEvent() {}
func (WakeDetected) isEvent() {}
