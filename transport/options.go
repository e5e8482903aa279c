package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/internal/wake"
	"github.com/ocapnet/ocapnet/wire"
)

// Options configures a Transport: the identity it runs as, and everything
// else in Config.
type Options struct {
	// KeySeed is the Ed25519 seed of this node's libp2p identity. Required.
	KeySeed identity.Seed

	// IncarnationID is sent in every handshake (reference §2.3). Required: a
	// peer without one cannot tell a restarted peer from a reconnected one.
	// Use identity.NewIncarnationID, persisted for the lifetime of the data
	// directory.
	IncarnationID string

	Config
}

// Config is a transport's configuration apart from its identity (package
// node fills the identity in from its data directory and takes a Config).
// The zero value of every field means the documented default; a negative
// duration means "off" only where the field says so. Start rejects nonsense
// (negative counts, a base delay above its maximum) with ErrInvalidOptions.
// Defaults equal upstream's (reference §1.7) except where a comment says we
// deviate and why; docs/PROTOCOL.md lists every deviation.
type Config struct {
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
	// the transport gives up on a peer (Handler.OnLinkEnded with
	// ErrRetriesExhausted). Default 0: never give up.
	MaxRetryAttempts int

	// ReconnectBaseDelay and ReconnectMaxDelay bound the exponential backoff
	// with full jitter between reconnection attempts (reference §5.1).
	// Defaults 500 ms and 10 s.
	ReconnectBaseDelay time.Duration
	ReconnectMaxDelay  time.Duration

	// MaxMessageSize is the largest frame payload in bytes, checked on every
	// write and on every inbound frame. Default 1 MiB, as upstream.
	MaxMessageSize int

	// InboundRate and InboundBurst limit the frames per second read from one
	// peer. When a peer exceeds it, its channel's reads pause (backpressure);
	// nothing is dropped and other peers are unaffected. Defaults 1,000,000/s
	// and 100,000: above what one stream carries on loopback here, so the
	// limit only stops floods. Deviation: upstream limits only outbound
	// sends, to 100/s, and refuses the excess.
	InboundRate  rate.Limit
	InboundBurst int

	// LegacyDialInterval is the least time between two streams we open to a
	// peer that does not announce the close feature (a JavaScript kernel):
	// each new channel it registers costs it one of its own rate-limited
	// redials (legacy.go). Default 6 s (its limit is 10 dials a minute).
	LegacyDialInterval time.Duration

	// LegacyHandshakeTimeout is how long a JavaScript peer waits for a
	// handshakeAck before it gives up on the stream (upstream's
	// handshakeTimeoutMs): when it wrote extra handshakes on one stream
	// (W8), it forgets its channel that long after, and we give it a fresh
	// one then (legacy.go). Default 10 s, upstream's default.
	LegacyHandshakeTimeout time.Duration

	// MaxConnections is the largest number of peers with an open channel.
	// When it is reached, the least valuable channel makes room for a
	// newcomer (admission.go). Default 4096. Deviation: upstream's default is
	// 100 and it refuses every newcomer past it; a hub kernel or a relay-side
	// node holds thousands of channels.
	MaxConnections int

	// MaxNewConnsPerIP and MaxNewConnsPerSubnet limit the rate of new
	// inbound connections and handshakes per source IP address and per
	// subnet (/24 for IPv4, /48 for IPv6), per second, with bursts of twice
	// that; loopback sources are exempt. MaxPendingHandshakes bounds the
	// inbound handshakes in progress at once (each is also bounded by
	// HandshakeTimeout). Defaults 20/s, 100/s and 256. What is refused is
	// reset at once, before any work for the identity.
	MaxNewConnsPerIP     rate.Limit
	MaxNewConnsPerSubnet rate.Limit
	MaxPendingHandshakes int

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

	// StalePeerTimeout is how long a peer with no channel, no pin, no waiting
	// Send and no reconnection in progress keeps its in-memory state;
	// CleanupInterval is how often stale peers are looked for. Defaults 1 h
	// and 15 min.
	StalePeerTimeout time.Duration
	CleanupInterval  time.Duration

	// RelayRedialBase and RelayRedialMax bound the backoff for re-dialling a
	// lost relay. Defaults 5 s and 60 s. Deviation: upstream stops after 10
	// tries; we never stop.
	RelayRedialBase time.Duration
	RelayRedialMax  time.Duration

	// Logger receives the transport's logs. Default: a logger that discards
	// everything.
	Logger *slog.Logger

	// Metrics, when set, is where the transport and go-libp2p register their
	// Prometheus collectors. Default: metrics are kept but not registered.
	Metrics prometheus.Registerer

	// Now returns the wall-clock time. It exists so that tests can simulate
	// a wall-clock jump (sleep and wake). Default time.Now.
	Now func() time.Time

	// Test hooks of this package's own tests.
	hostOptions   []libp2p.Option // extra go-libp2p options
	backoffRand   func() float64  // the jitter source
	limitLoopback bool            // apply the per-IP limits to loopback sources too
}

// ErrInvalidOptions: Start was given options that make no sense.
var ErrInvalidOptions = errors.New("invalid transport options")

// withDefaults checks o and returns it with zero fields set to their
// defaults.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if o.IncarnationID == "" {
		return bad("IncarnationID is required")
	}
	for name, d := range map[string]time.Duration{
		"ReconnectBaseDelay": o.ReconnectBaseDelay, "ReconnectMaxDelay": o.ReconnectMaxDelay,
		"WriteTimeout": o.WriteTimeout, "HandshakeTimeout": o.HandshakeTimeout, "DialTimeout": o.DialTimeout,
		"LivenessTimeout": o.LivenessTimeout, "WakeThreshold": o.WakeThreshold,
		"FailureMinDuration": o.FailureMinDuration, "StalePeerTimeout": o.StalePeerTimeout,
		"CleanupInterval": o.CleanupInterval, "RelayRedialBase": o.RelayRedialBase, "RelayRedialMax": o.RelayRedialMax,
		"LegacyDialInterval": o.LegacyDialInterval, "LegacyHandshakeTimeout": o.LegacyHandshakeTimeout,
	} {
		if d < 0 {
			return bad("%s is negative (%v)", name, d)
		}
	}
	for name, n := range map[string]int{
		"MaxRetryAttempts": o.MaxRetryAttempts, "MaxMessageSize": o.MaxMessageSize, "InboundBurst": o.InboundBurst,
		"MaxConnections": o.MaxConnections, "FailureThreshold": o.FailureThreshold, "MaxPendingHandshakes": o.MaxPendingHandshakes,
	} {
		if n < 0 {
			return bad("%s is negative (%d)", name, n)
		}
	}
	if o.InboundRate < 0 || o.MaxNewConnsPerIP < 0 || o.MaxNewConnsPerSubnet < 0 {
		return bad("a rate is negative (InboundRate %v, MaxNewConnsPerIP %v, MaxNewConnsPerSubnet %v)", o.InboundRate, o.MaxNewConnsPerIP, o.MaxNewConnsPerSubnet)
	}
	if len(o.ListenAddrs) == 0 {
		o.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ReconnectBaseDelay, 500*time.Millisecond)
	def(&o.ReconnectMaxDelay, 10*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.DialTimeout, 30*time.Second)
	def(&o.LivenessInterval, 10*time.Second)
	def(&o.LivenessTimeout, 10*time.Second)
	def(&o.WakeInterval, wake.DefaultInterval)
	def(&o.WakeThreshold, wake.DefaultThreshold)
	def(&o.FailureMinDuration, 10*time.Minute)
	def(&o.StalePeerTimeout, time.Hour)
	def(&o.CleanupInterval, 15*time.Minute)
	def(&o.RelayRedialBase, 5*time.Second)
	def(&o.RelayRedialMax, 60*time.Second)
	def(&o.LegacyDialInterval, 6*time.Second)
	def(&o.LegacyHandshakeTimeout, 10*time.Second)
	if o.ReconnectBaseDelay > o.ReconnectMaxDelay {
		return bad("ReconnectBaseDelay %v is above ReconnectMaxDelay %v", o.ReconnectBaseDelay, o.ReconnectMaxDelay)
	}
	if o.RelayRedialBase > o.RelayRedialMax {
		return bad("RelayRedialBase %v is above RelayRedialMax %v", o.RelayRedialBase, o.RelayRedialMax)
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defInt(&o.MaxMessageSize, wire.DefaultMaxMessageSize)
	defInt(&o.InboundBurst, 100_000)
	defInt(&o.MaxConnections, 4096)
	defInt(&o.MaxPendingHandshakes, 256)
	if o.MaxNewConnsPerIP == 0 {
		o.MaxNewConnsPerIP = 20
	}
	if o.MaxNewConnsPerSubnet == 0 {
		o.MaxNewConnsPerSubnet = 100
	}
	defInt(&o.FailureThreshold, 5)
	if o.InboundRate == 0 {
		o.InboundRate = 1_000_000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}
