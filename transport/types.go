package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/ocapnet/ocapnet/identity"
)

// Options configures a Transport. The zero value of every field means "use
// the documented default", so callers set only what they need. Defaults equal
// upstream's (reference §1.7) except where a comment says we deviate and why;
// docs/PROTOCOL.md lists every deviation.
type Options struct {
	// KeySeed is the Ed25519 seed of this node's libp2p identity. Required.
	KeySeed identity.Seed

	// IncarnationID is sent in every handshake (reference §2.3). Required: a
	// node without one cannot tell a restarted peer from a reconnected one.
	// Use identity.NewIncarnationID, persisted for the lifetime of the data
	// directory.
	IncarnationID string

	// Relays are relay multiaddrs, each ending in /p2p/<relay peer ID>. The
	// transport reserves a slot on every one of them right at start, keeps
	// the reservations refreshed and re-dials a lost relay for ever with
	// backoff (RelayRedialBase..RelayRedialMax, full jitter).
	Relays []string

	// ListenAddrs are the multiaddrs to listen on. Default:
	// /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1. Tests pass loopback
	// addresses. /p2p-circuit is added automatically when Relays is set.
	ListenAddrs []string

	// AllowedWSHosts are hosts (IP or DNS name) that may be dialled over
	// plain, unencrypted WebSocket in addition to private addresses and the
	// hosts of plain-ws relays (reference §4.3).
	AllowedWSHosts []string

	// WSSConfig, when set, makes /tls/ws (WSS) listen addresses usable.
	WSSConfig *tls.Config

	// MaxRetryAttempts is the number of reconnection attempts after which
	// the transport gives up on a peer and returns its queued messages in a
	// GaveUp event. Default 0: never give up.
	MaxRetryAttempts int

	// ReconnectBaseDelay and ReconnectMaxDelay bound the exponential backoff
	// with full jitter between reconnection attempts (reference §5.1).
	// Defaults 500 ms and 10 s.
	ReconnectBaseDelay time.Duration
	ReconnectMaxDelay  time.Duration

	// MaxQueue is the number of messages queued per peer while it is
	// unreachable. When full, Send returns ErrQueueFull for the new message;
	// older messages are never dropped. Default 200.
	MaxQueue int

	// MaxMessageSize is the largest message in bytes, checked on Send before
	// anything is queued and on every inbound frame. Default 1 MiB.
	MaxMessageSize int

	// InboundRate and InboundBurst limit the frames per second read from one
	// peer. When a peer exceeds it, its channel's reads pause (backpressure);
	// nothing is dropped and other peers are unaffected. Defaults 1,000,000/s
	// and 100,000: above what one stream carries on loopback here (a bare
	// go-libp2p stream: about 230,000 100-byte frames/s over TCP, 700,000
	// over QUIC), so the limit only stops floods. Deviation: upstream limits
	// only outbound sends, to 100/s, and refuses the excess; we never cap a
	// healthy peer below 50,000/s.
	InboundRate  rate.Limit
	InboundBurst int

	// MaxConnections is the largest number of peers with an open channel.
	// Default 100.
	MaxConnections int

	// WriteTimeout bounds every frame write, HandshakeTimeout the handshake
	// exchange and DialTimeout one dial over all candidate addresses.
	// Defaults 10 s, 10 s and 30 s.
	WriteTimeout     time.Duration
	HandshakeTimeout time.Duration
	DialTimeout      time.Duration

	// LivenessInterval is how often an open channel's connection is checked
	// with libp2p ping, and LivenessTimeout how long one check may take.
	// A failed check counts as connection loss. Defaults 10 s and 10 s, so a
	// silent partition is detected within 30 s. A negative interval turns
	// the check off.
	LivenessInterval time.Duration
	LivenessTimeout  time.Duration

	// WakeInterval and WakeThreshold configure the sleep/wake detector: every
	// WakeInterval the wall clock is read, and when more than WakeInterval +
	// WakeThreshold of wall-clock time passed since the previous reading the
	// machine is taken to have slept. Defaults 15 s and 30 s. A negative
	// interval turns the detector off.
	WakeInterval  time.Duration
	WakeThreshold time.Duration

	// FailureThreshold identical unreachable-type dial errors spread over at
	// least FailureMinDuration mark a peer as failed (a reported state; the
	// peer is still retried at the backoff cap). Defaults 5 and 10 minutes.
	FailureThreshold   int
	FailureMinDuration time.Duration

	// StalePeerTimeout is how long a peer with no channel, no queued
	// messages, no pin and no reconnection in progress keeps its in-memory
	// state; CleanupInterval is how often stale peers are looked for.
	// Defaults 1 h and 15 min.
	StalePeerTimeout time.Duration
	CleanupInterval  time.Duration

	// RelayRedialBase and RelayRedialMax bound the backoff for re-dialling a
	// lost relay. Defaults 5 s and 60 s. Deviation: upstream stops after 10
	// tries; we never stop.
	RelayRedialBase time.Duration
	RelayRedialMax  time.Duration

	// Logger receives the transport's logs and go-libp2p's. Default: a
	// logger that discards everything.
	Logger *slog.Logger

	// Metrics, when set, is where the transport registers its Prometheus
	// collectors. Default: metrics are kept but not registered anywhere.
	Metrics prometheus.Registerer

	// Now returns the wall-clock time. It exists so that tests can simulate
	// a wall-clock jump (sleep and wake). Default time.Now.
	Now func() time.Time

	// Test hooks of this package's own tests.
	hostOptions []libp2p.Option // extra go-libp2p options
	backoffRand func() float64  // the jitter source
}

// Handler receives what the transport delivers to the layer above. Every
// field is optional.
type Handler struct {
	// OnMessage is called for every inbound application frame, one at a
	// time per peer and in the order the peer wrote them, from that peer's
	// read loop: while it runs, reads from that peer pause (backpressure).
	// msg is owned by the callee.
	OnMessage func(from peer.ID, msg []byte)

	// OnHandshake is called after every successful handshake, before the
	// new channel carries any application frame. The layer above returns
	// restarted=true when it knows, from persisted state, that the peer's
	// incarnation changed; a non-nil error rejects the channel (it is closed
	// and counted as a failed handshake).
	OnHandshake func(p peer.ID, incarnationID string) (restarted bool, err error)

	// OnEvent receives events in the order they happened, from one
	// goroutine. A slow OnEvent delays later events, never the network.
	OnEvent func(Event)
}

// Event is one of StateChanged, GaveUp, PeerRestarted, WakeDetected.
type Event interface{ isEvent() }

// StateChanged reports a peer's new state.
type StateChanged struct {
	Peer PeerInfo
}

// GaveUp reports that the transport stopped trying to deliver to a peer. It
// carries every message that was queued for the peer and not written, in
// order, so that nothing handed to Send is lost silently. Reason wraps one
// of ErrIntentionallyClosed, ErrPeerRestarted, ErrStopped, ErrClosedByPeer or
// ErrRetriesExhausted.
type GaveUp struct {
	Peer     peer.ID
	Reason   error
	Messages [][]byte
}

// PeerRestarted reports that a peer's handshake carried a different
// incarnation ID than the one seen before: the peer lost its state.
type PeerRestarted struct {
	Peer     peer.ID
	Previous string
	Current  string
}

// WakeDetected reports a wall-clock jump larger than the detector's
// threshold: the machine probably slept. All backoffs were reset and
// reconnection attempts started at once.
type WakeDetected struct {
	// Gap is the wall-clock time between the last two readings.
	Gap time.Duration
}

func (StateChanged) isEvent()  {}
func (GaveUp) isEvent()        {}
func (PeerRestarted) isEvent() {}
func (WakeDetected) isEvent()  {}

// State is a peer's connection state.
type State int

// The peer states. Only Connected carries traffic.
const (
	// StateIdle: no channel and nothing to deliver; the transport does not
	// dial until a send, a pin or Reconnect.
	StateIdle State = iota
	// StateConnecting: the first dial of a session is in progress.
	StateConnecting
	// StateConnected: a channel is open and handshaken.
	StateConnected
	// StateReconnecting: waiting for, or running, reconnection attempt
	// PeerInfo.Attempt; PeerInfo.NextRetry is when the next one starts.
	StateReconnecting
	// StateFailed: the permanent-failure heuristic fired (identical
	// unreachable errors for a long time). Still retried at the backoff
	// cap; a send, Reconnect or a wake clears it.
	StateFailed
	// StateClosed: closed on purpose with Close; sends are refused with
	// ErrIntentionallyClosed until Reconnect.
	StateClosed
	// StateClosedByPeer: the peer closed the link on purpose; we do not
	// reconnect and sends are refused with ErrClosedByPeer until Reconnect
	// or until the peer dials us again.
	StateClosedByPeer
	// StateGaveUp: MaxRetryAttempts was reached; a send or Reconnect starts
	// a new session.
	StateGaveUp
)

var stateNames = [...]string{"idle", "connecting", "connected", "reconnecting", "failed", "closed", "closed-by-peer", "gave-up"}

// String returns the state's lower-case name, as used in logs, metrics and
// the daemon's JSON.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// PeerInfo is a snapshot of one peer's state.
type PeerInfo struct {
	ID    peer.ID
	State State
	// Attempt is the current reconnection attempt (1-based) while
	// Connecting or Reconnecting, else 0.
	Attempt int
	// NextRetry is when the next attempt starts (zero if none is waiting).
	NextRetry time.Time
	// LastError is the last dial, handshake, read or write error.
	LastError string
	// QueueDepth is the number of messages queued in the transport.
	QueueDepth int
	// Pinned reports whether the layer above asked to keep the peer
	// connected (SetPinned).
	Pinned bool
	// Incarnation is the peer's incarnation ID from its last handshake.
	Incarnation string
	// Features are the optional features the peer announced in its last
	// handshake (empty for JavaScript peers).
	Features []string
	// RemoteAddr is the multiaddr of the channel's connection when connected.
	RemoteAddr string
	// Since is when the peer entered State.
	Since time.Time
}

// Errors returned by the transport. Test for them with errors.Is; the
// returned errors wrap them with details.
var (
	// ErrStopped: the transport was stopped.
	ErrStopped = errors.New("transport stopped")
	// ErrIntentionallyClosed: the peer was closed with Close.
	ErrIntentionallyClosed = errors.New("peer intentionally closed")
	// ErrClosedByPeer: the peer closed the link on purpose.
	ErrClosedByPeer = errors.New("link closed by peer")
	// ErrPeerRestarted: the peer's incarnation changed.
	ErrPeerRestarted = errors.New("peer restarted")
	// ErrQueueFull: the peer's send queue holds MaxQueue messages.
	ErrQueueFull = errors.New("send queue full")
	// ErrMessageTooLarge: the message exceeds MaxMessageSize.
	ErrMessageTooLarge = errors.New("message too large")
	// ErrRateLimited: a rate limit was exceeded.
	ErrRateLimited = errors.New("rate limited")
	// ErrConnectionLimit: MaxConnections channels are open.
	ErrConnectionLimit = errors.New("connection limit reached")
	// ErrHandshakeFailed: the handshake on a new stream failed.
	ErrHandshakeFailed = errors.New("handshake failed")
	// ErrNotConnected: TrySend found no open channel.
	ErrNotConnected = errors.New("peer not connected")
	// ErrChannelChanged: TrySendOn found the peer's channel replaced.
	ErrChannelChanged = errors.New("peer's channel was replaced")
	// ErrRetriesExhausted: MaxRetryAttempts reconnection attempts failed.
	ErrRetriesExhausted = errors.New("reconnection attempts exhausted")
	// ErrInvalidPeer: a peer ID or hint could not be parsed.
	ErrInvalidPeer = errors.New("invalid peer")
)
