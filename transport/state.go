package transport

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// State is a peer's connection state.
type State int

// The peer states. Only Connected carries traffic.
const (
	// StateIdle: no channel and nothing wants one; the transport does not
	// dial until a Send, a pin or Reconnect.
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
	// cap; Admit (a send), Reconnect or a wake clears it.
	StateFailed
	// StateClosed: closed on purpose with Close; sends are refused with
	// ErrIntentionallyClosed until Reconnect.
	StateClosed
	// StateClosedByPeer: the peer closed the link on purpose; we do not
	// reconnect and sends are refused with ErrClosedByPeer until Reconnect
	// or until the peer dials us again.
	StateClosedByPeer
	// StateGaveUp: MaxRetryAttempts was reached; Admit (a send) or
	// Reconnect starts a new session.
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

// PeerInfo is a snapshot of one peer's link.
type PeerInfo struct {
	ID    peer.ID
	State State
	// Attempt is the current reconnection attempt (1-based) while
	// Connecting, Reconnecting or Failed, else 0.
	Attempt int
	// NextRetry is when the next attempt starts (zero if none is waiting).
	NextRetry time.Time
	// Dialing reports that attempt Attempt is running now (NextRetry is
	// then in the past).
	Dialing bool
	// LastError is the last dial, handshake, read or write error.
	LastError string
	// Pinned reports whether the layer above asked to keep the peer
	// connected (SetPinned).
	Pinned bool
	// Gen is the generation of the open channel (0 when not connected).
	Gen uint64
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

// RelayStatus is the state of the reservation on one configured relay.
type RelayStatus struct {
	Relay     peer.ID
	Reserved  bool
	Expires   time.Time
	Attempt   int
	NextTry   time.Time
	LastError string
}
