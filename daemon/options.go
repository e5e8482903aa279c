package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ocapnet/ocapnet/node"
)

// Options configures a daemon. The zero value of every field means the
// documented default; a negative value means "off" only where the field says
// so. Start rejects nonsense with ErrInvalidOptions.
type Options struct {
	// Node configures the node; its Transport.Metrics is set by the daemon.
	Node node.Options

	// Out, when set, receives every event as one JSON line (--stdio).
	Out io.Writer

	// API, when set, is the address of the HTTP API (--api). It must be a
	// loopback address unless AllowRemote.
	API string
	// AllowRemote allows a non-loopback API address. It requires TLS
	// (TLSCert and TLSKey) unless InsecureHTTP is set too.
	AllowRemote bool
	// TLSCert and TLSKey are PEM files: the API is then served over HTTPS.
	TLSCert, TLSKey string
	// InsecureHTTP allows AllowRemote without TLS (the token then crosses
	// the network in clear text); the daemon logs a warning.
	InsecureHTTP bool
	// APIHosts are extra host names the API accepts in the Host header
	// (besides the address it is bound to and localhost), e.g. the DNS name
	// of a remote API.
	APIHosts []string

	// AllowInsecureDir allows a data directory that other users can write
	// to, and an API token file that other users can read. Default: refused
	// (ErrInsecureDir, ErrBadToken).
	AllowInsecureDir bool

	// CumulativeAcks makes the daemon announce acknowledgements with one
	// "acked" event per acknowledged range (fromSeq..seq, with the ids of
	// the range) instead of one per message. Default off.
	CumulativeAcks bool

	// EventMaxBytes and EventMaxAge bound the durable event log of the API
	// (its retention): when it holds more bytes, or events older than that,
	// the oldest events are deleted and a "dropped" event gives the range.
	// Defaults 64 MiB and 7 days; negative: no limit (events then stay until
	// a consumer acknowledges them). EventMaxBytes must be at least 64 KiB.
	EventMaxBytes int64
	EventMaxAge   time.Duration

	// PeerEventInterval coalesces repeated peer events: a peer that stays in
	// one state (a reconnection attempt after another) is announced at most
	// once per interval, with the latest attempt and how many reports the
	// event stands for. A change of state is announced at once. Default 30 s;
	// negative: every report is announced.
	PeerEventInterval time.Duration

	// SSEBufferBytes bounds what one event-stream client holds in memory
	// (at least one event). Default 256 KiB; at least 4 KiB.
	SSEBufferBytes int
	// SSEMaxLag is how far (bytes of events that arrived since it
	// connected) a client may fall behind before it is disconnected with a
	// "disconnected" event telling why. Default 16 MiB; at least 64 KiB.
	SSEMaxLag int64
	// SSEWriteTimeout bounds every write to an event-stream client: one
	// that stops reading is disconnected after it. Default 30 s.
	SSEWriteTimeout time.Duration

	// ReadyWait bounds how long Start waits for the first reservation
	// attempt on every configured relay, so that the ready information
	// includes the /p2p-circuit addresses. Default 5 s; negative: no wait.
	ReadyWait time.Duration

	// Kernel runs a kernel endpoint (package endpoint) on the node: the
	// kernel messages (deliver, redeemURL, redeemURLReply) go to it
	// instead of "message" events, and the export, resolve, redeem and
	// call ops work (--kernel). Default off.
	Kernel bool

	// Version is reported by the info op and the status page. Default:
	// Version().
	Version string

	// Logger receives the daemon's logs. Default: discard.
	Logger *slog.Logger
}

// Errors returned by the daemon; returned errors wrap them with details.
var (
	// ErrInvalidOptions: Start was given options that make no sense.
	ErrInvalidOptions = errors.New("invalid daemon options")
	// ErrBadRequest marks errors in a request (as opposed to the node's
	// errors); see RequestError for the field or position.
	ErrBadRequest = errors.New("bad request")
	// ErrInsecureDir: the data directory is writable by other users.
	ErrInsecureDir = errors.New("data directory is writable by other users")
	// ErrBadToken: the API token file is empty, too short, unreadable,
	// malformed or readable by other users.
	ErrBadToken = errors.New("unusable API token file")
)

// The defaults of Options.
const (
	DefaultEventMaxBytes     = 64 << 20
	DefaultEventMaxAge       = 7 * 24 * time.Hour
	DefaultPeerEventInterval = 30 * time.Second
	DefaultSSEBufferBytes    = 256 << 10
	DefaultSSEMaxLag         = 16 << 20
	DefaultSSEWriteTimeout   = 30 * time.Second
	DefaultReadyWait         = 5 * time.Second
)

// withDefaults checks o and returns it with zero fields set to their
// defaults.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if o.API != "" {
		if err := checkAPIAddr(o.API, o.AllowRemote); err != nil {
			return bad("%v", err)
		}
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return bad("TLSCert and TLSKey go together (--api-tls-cert, --api-tls-key)")
	}
	if o.AllowRemote && o.TLSCert == "" && !o.InsecureHTTP {
		return bad("a remote API (--api-allow-remote) needs TLS (--api-tls-cert and --api-tls-key); " +
			"--api-insecure-http serves it over plain HTTP, token included")
	}
	if o.EventMaxBytes == 0 {
		o.EventMaxBytes = DefaultEventMaxBytes
	}
	if o.EventMaxBytes > 0 && o.EventMaxBytes < 64<<10 {
		return bad("EventMaxBytes %d is below 64 KiB", o.EventMaxBytes)
	}
	if o.EventMaxAge == 0 {
		o.EventMaxAge = DefaultEventMaxAge
	}
	if o.EventMaxAge > 0 && o.EventMaxAge < time.Second {
		return bad("EventMaxAge %v is below 1 s", o.EventMaxAge)
	}
	if o.PeerEventInterval == 0 {
		o.PeerEventInterval = DefaultPeerEventInterval
	}
	switch {
	case o.SSEBufferBytes == 0:
		o.SSEBufferBytes = DefaultSSEBufferBytes
	case o.SSEBufferBytes < 4<<10:
		return bad("SSEBufferBytes %d is below 4 KiB", o.SSEBufferBytes)
	}
	switch {
	case o.SSEMaxLag == 0:
		o.SSEMaxLag = DefaultSSEMaxLag
	case o.SSEMaxLag < 64<<10:
		return bad("SSEMaxLag %d is below 64 KiB", o.SSEMaxLag)
	}
	switch {
	case o.SSEWriteTimeout == 0:
		o.SSEWriteTimeout = DefaultSSEWriteTimeout
	case o.SSEWriteTimeout < 0:
		return bad("SSEWriteTimeout is negative (%v)", o.SSEWriteTimeout)
	}
	if o.ReadyWait == 0 {
		o.ReadyWait = DefaultReadyWait
	}
	if o.Version == "" {
		o.Version = Version()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
