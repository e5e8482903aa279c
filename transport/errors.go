package transport

import "errors"

// Errors returned by the transport. Test for them with errors.Is; the
// returned errors wrap them with details.
var (
	// ErrStopped: the transport was stopped.
	ErrStopped = errors.New("transport stopped")
	// ErrIntentionallyClosed: the peer was closed with Close.
	ErrIntentionallyClosed = errors.New("peer intentionally closed")
	// ErrClosedByPeer: the peer closed the link on purpose.
	ErrClosedByPeer = errors.New("link closed by peer")
	// ErrPeerRestarted: the peer's incarnation changed (used by the layer
	// above, which decides restarts).
	ErrPeerRestarted = errors.New("peer restarted")
	// ErrMessageTooLarge: the message exceeds MaxMessageSize.
	ErrMessageTooLarge = errors.New("message too large")
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
