package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// Options configures a Node. The zero value of every field means "use the
// documented default"; Start rejects nonsense (negative counts and
// durations, a timeout above its maximum) with ErrInvalidOptions.
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

	// Transport configures the transport (the identity comes from Dir). Its
	// Logger defaults to the node's.
	Transport transport.Config

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
	// Retransmission also happens at once on every new channel.
	AckTimeout    time.Duration
	AckTimeoutMax time.Duration

	// MaxRetransmits is the number of retransmissions without progress
	// after which the node gives up on the window (GaveUp with
	// ErrNotAcknowledged). Default 0: never give up.
	MaxRetransmits int

	// StallRounds is how many ack timeouts in a row, with the link up and
	// messages outstanding, bring no acknowledgement before the peer is
	// reported Stalled (it reads but does not acknowledge, or its
	// acknowledgements are lost). Default 3. StallGiveUp, when positive,
	// gives up on a peer stalled that long (GaveUp with ErrStalled, the
	// messages parked); default 0: keep trying.
	StallRounds int
	StallGiveUp time.Duration

	// GapTolerance is how many times the first frame after a gap in the
	// peer's sequence numbers must arrive before the gap is accepted
	// (a Gap event names the missing range). A gap is never acknowledged
	// before that, so a sender that still has the missing messages resends
	// them. Default 3.
	GapTolerance int

	// IntentBatch and IntentBatchMax bound how many inbound sequence
	// numbers are reserved in one durable write before messages are handed
	// to the application: the next batch is reserved ahead, in the
	// background, and its size adapts to the rate between the two. After a
	// crash, up to IntentBatchMax messages the application may or may not
	// have seen come again marked Redelivery. Defaults 64 and 1024.
	IntentBatch    int
	IntentBatchMax int

	// MaxIdlePeers caps the peers kept in memory: past it, the least
	// recently active peers with nothing in flight are dropped from memory
	// (every ActiveInterval). Their state stays on disk and is reloaded on
	// their next contact, so the cap bounds memory, never correctness.
	// Default 1000.
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

// withDefaults checks o and returns it with zero fields set to their
// defaults.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if o.Dir == "" {
		return bad("Dir is required")
	}
	for name, d := range map[string]time.Duration{
		"AckDelay": o.AckDelay, "AckTimeout": o.AckTimeout, "AckTimeoutMax": o.AckTimeoutMax, "StallGiveUp": o.StallGiveUp,
		"ActiveInterval": o.ActiveInterval, "ClearFailuresAfter": o.ClearFailuresAfter,
	} {
		if d < 0 {
			return bad("%s is negative (%v)", name, d)
		}
	}
	for name, n := range map[string]int{
		"Window": o.Window, "MaxRetransmits": o.MaxRetransmits, "GapTolerance": o.GapTolerance, "StallRounds": o.StallRounds,
		"IntentBatch": o.IntentBatch, "IntentBatchMax": o.IntentBatchMax, "MaxIdlePeers": o.MaxIdlePeers,
	} {
		if n < 0 {
			return bad("%s is negative (%d)", name, n)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	defInt(&o.Window, 4096)
	def(&o.AckDelay, 50*time.Millisecond)
	def(&o.AckTimeout, 10*time.Second)
	def(&o.AckTimeoutMax, 2*time.Minute)
	defInt(&o.GapTolerance, 3)
	defInt(&o.StallRounds, 3)
	defInt(&o.IntentBatch, 64)
	defInt(&o.IntentBatchMax, max(1024, o.IntentBatch))
	if o.IntentBatchMax < o.IntentBatch {
		return bad("IntentBatchMax %d is below IntentBatch %d", o.IntentBatchMax, o.IntentBatch)
	}
	defInt(&o.MaxIdlePeers, 1000)
	def(&o.ActiveInterval, time.Minute)
	def(&o.ClearFailuresAfter, time.Hour)
	if o.AckTimeout > o.AckTimeoutMax {
		return bad("AckTimeout %v is above AckTimeoutMax %v", o.AckTimeout, o.AckTimeoutMax)
	}
	if o.KeySeed != "" && o.Mnemonic != "" {
		return bad("give a key seed or a mnemonic, not both")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport.Logger == nil {
		o.Transport.Logger = o.Logger
	}
	return o, nil
}

// Errors returned by the node. Test for them with errors.Is; returned errors
// wrap them with details. Transport errors (transport.ErrIntentionallyClosed,
// transport.ErrClosedByPeer, transport.ErrMessageTooLarge, ...) are passed on
// wrapped.
var (
	// ErrStopped: the node was stopped.
	ErrStopped = errors.New("node stopped")
	// ErrInvalidOptions: Start was given options that make no sense.
	ErrInvalidOptions = errors.New("invalid node options")
	// ErrWindowFull: Send's context ended while the peer's window was full.
	ErrWindowFull = errors.New("send window full")
	// ErrIdentityMismatch: the data directory holds another identity than
	// the configured seed or mnemonic.
	ErrIdentityMismatch = errors.New("data directory holds a different identity")
	// ErrNotAcknowledged: MaxRetransmits retransmissions brought no
	// acknowledgement.
	ErrNotAcknowledged = errors.New("messages not acknowledged")
	// ErrStalled: the peer acknowledged nothing for StallGiveUp while its
	// link was up.
	ErrStalled = errors.New("peer stalled: no acknowledgement")
	// ErrPeerDenied: the peer is not allowed by Allow/Deny.
	ErrPeerDenied = errors.New("peer denied")
	// ErrInvalidMessage: the method, params or tag cannot be sent.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrNothingParked: Resend or Discard found no parked messages.
	ErrNothingParked = errors.New("no parked messages")
)
