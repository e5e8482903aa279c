package node

import (
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// Options configures a Node. The zero value of every field means "use the
// documented default".
type Options struct {
	// Dir is the data directory (one bbolt file). Required. One process at a
	// time may use it.
	Dir string

	// KeySeed (64 hex digits, or shorter by upstream's fromHex rules) or
	// Mnemonic (BIP39 English) give the identity when Dir has none yet;
	// with neither, a random seed is made. When Dir already has an
	// identity, a KeySeed or Mnemonic that gives a different one is an
	// error (ErrIdentityMismatch), never silently replaced.
	KeySeed  string
	Mnemonic string

	// Transport configures the transport. KeySeed and IncarnationID are
	// set by the node from the data directory; Logger defaults to the
	// node's.
	Transport transport.Options

	// Window is the most unacknowledged messages per peer. When it is
	// full, Send blocks until the peer acknowledges or Send's context
	// ends (ErrWindowFull). Default 4096.
	Window int

	// AckDelay is how long a receiver waits for an outgoing message to
	// piggyback its acknowledgement on before sending a standalone
	// {"ack":N}. Default 50 ms (as upstream).
	AckDelay time.Duration

	// AckTimeout is how long a sender waits for an acknowledgement that
	// advances, on an open channel, before retransmitting the window
	// (go-back-N); it doubles after each retransmission without progress,
	// up to AckTimeoutMax. Defaults 10 s (as upstream) and 2 min.
	// Retransmission also happens at once after every reconnection.
	AckTimeout    time.Duration
	AckTimeoutMax time.Duration

	// MaxRetransmits is the number of retransmissions without progress
	// after which the node gives up on the window (GaveUp with
	// ErrNotAcknowledged). Default 0: never give up.
	MaxRetransmits int

	// GapTolerance is how many times the first frame after a gap in the
	// peer's sequence numbers must arrive before the gap is accepted
	// (a Gap event names the missing range). A gap is never acknowledged
	// before that, so a sender that still has the missing messages resends
	// them. Default 3.
	GapTolerance int

	// IntentBatch is how many inbound sequence numbers are reserved in one
	// durable write before messages are handed to the application. After a
	// crash, up to IntentBatch messages the application may or may not
	// have seen come again marked Redelivery. Default 64.
	IntentBatch int

	// MaxIdlePeers caps the stored peers that have no pending work (nothing
	// unacknowledged or parked); the least recently active are forgotten
	// first. Default 1000.
	MaxIdlePeers int

	// Allow, when not empty, lists the only peers that may open a channel
	// and be sent to. Deny lists peers that may not. Deny wins.
	Allow []peer.ID
	Deny  []peer.ID

	// ActiveInterval is how often last-active time is persisted and the
	// idle-peer cap applied. Default 1 min.
	ActiveInterval time.Duration

	// ClearFailuresAfter: when the node starts more than this long after it
	// was last active (a crash or stop across a sleep), persisted failure
	// states are cleared. Default 1 h.
	ClearFailuresAfter time.Duration

	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger

	// Store configures the data directory's database.
	Store store.Options
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt(&o.Window, 4096)
	def(&o.AckDelay, 50*time.Millisecond)
	def(&o.AckTimeout, 10*time.Second)
	def(&o.AckTimeoutMax, 2*time.Minute)
	defInt(&o.GapTolerance, 3)
	defInt(&o.IntentBatch, 64)
	defInt(&o.MaxIdlePeers, 1000)
	def(&o.ActiveInterval, time.Minute)
	def(&o.ClearFailuresAfter, time.Hour)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Errors returned by the node. Test for them with errors.Is; returned errors
// wrap them with details. Transport errors (transport.ErrIntentionallyClosed,
// transport.ErrClosedByPeer, transport.ErrMessageTooLarge, ...) are passed on
// wrapped.
var (
	// ErrStopped: the node was stopped.
	ErrStopped = errors.New("node stopped")
	// ErrWindowFull: Send's context ended while the peer's window was full.
	ErrWindowFull = errors.New("send window full")
	// ErrIdentityMismatch: the data directory holds another identity than
	// the configured seed or mnemonic.
	ErrIdentityMismatch = errors.New("data directory holds a different identity")
	// ErrNotAcknowledged: MaxRetransmits retransmissions brought no
	// acknowledgement.
	ErrNotAcknowledged = errors.New("messages not acknowledged")
	// ErrPeerDenied: the peer is not allowed by Allow/Deny.
	ErrPeerDenied = errors.New("peer denied")
	// ErrInvalidMessage: the method or params cannot be sent.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrNothingParked: Resend or Discard found no parked messages.
	ErrNothingParked = errors.New("no parked messages")
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

// Event is one of Acknowledged, GaveUp, Gap, PeerRestarted, StateChanged,
// WakeDetected.
type Event interface{ event() }

// Acknowledged reports that the peer acknowledged messages From..To
// (inclusive): they were delivered to its application and recorded.
type Acknowledged struct {
	Peer     peer.ID
	From, To uint64
}

// Undelivered is a message handed back in a GaveUp event.
type Undelivered struct {
	Seq    uint64
	Method string
	Params json.RawMessage
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
func (StateChanged) event()  {}
func (WakeDetected) event()  {}

// PeerStatus is a snapshot of one peer relationship.
type PeerStatus struct {
	transport.PeerInfo
	// NextSeq is the last outbound sequence number assigned, Acked the
	// highest acknowledged, Unacked how many are in the window, Parked how
	// many wait for Resend or Discard.
	NextSeq, Acked uint64
	Unacked        int
	Parked         int
	// Delivered is the highest inbound sequence number delivered.
	Delivered uint64
}
