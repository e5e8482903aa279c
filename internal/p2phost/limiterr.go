package p2phost

import (
	"errors"
	"strings"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
)

// LimitSide says whose resource limit an error comes from.
type LimitSide int

const (
	// NoLimit: the error is not a resource limit (or not known to be).
	NoLimit LimitSide = iota
	// LocalLimit: this host's resource manager refused (a connection, a
	// stream or memory over one of our own Limits). Retrying the same peer
	// does not help until something here closes; it is not evidence that
	// the peer is unreachable.
	LocalLimit
	// RemoteLimit: the peer (or the relay on the way) refused for its own
	// limits: it reset the stream or closed the connection with a
	// resource-limit code, or a relay answered RESOURCE_LIMIT_EXCEEDED or
	// RESERVATION_REFUSED.
	RemoteLimit
)

func (s LimitSide) String() string {
	switch s {
	case LocalLimit:
		return "local"
	case RemoteLimit:
		return "remote"
	}
	return "none"
}

// Limit tells whose resource limit err comes from:
//
//   - LocalLimit for errors that wrap network.ErrResourceLimitExceeded (go-libp2p's
//     resource manager: "cannot reserve inbound/outbound stream", "connection",
//     "file descriptor", "memory", on any scope), and for the resource manager's
//     two unwrapped errors "connections per ip limit exceeded" and "rate limit
//     exceeded" (per-IP limits on our own dials), and for a stream or connection
//     this side reset with a resource-limit code (network.StreamError or
//     ConnError with Remote false);
//   - RemoteLimit for a network.StreamError or network.ConnError with Remote set
//     and a resource-limit or rate-limit code, and for a relay's refusal
//     (client.ReservationError with status RESOURCE_LIMIT_EXCEEDED or
//     RESERVATION_REFUSED, or a circuit dial error naming RESOURCE_LIMIT_EXCEEDED);
//   - NoLimit otherwise.
//
// A remote stream error is checked before the local sentinel because its
// Unwrap chain could in principle carry both.
func Limit(err error) LimitSide {
	if err == nil {
		return NoLimit
	}
	if se, ok := errors.AsType[*network.StreamError](err); ok &&
		(se.ErrorCode == network.StreamResourceLimitExceeded || se.ErrorCode == network.StreamRateLimited) {
		if se.Remote {
			return RemoteLimit
		}
		return LocalLimit
	}
	if ce, ok := errors.AsType[*network.ConnError](err); ok &&
		(ce.ErrorCode == network.ConnResourceLimitExceeded || ce.ErrorCode == network.ConnRateLimited) {
		if ce.Remote {
			return RemoteLimit
		}
		return LocalLimit
	}
	if re, ok := errors.AsType[client.ReservationError](err); ok &&
		(re.Status == pbv2.Status_RESOURCE_LIMIT_EXCEEDED || re.Status == pbv2.Status_RESERVATION_REFUSED) {
		return RemoteLimit
	}
	if errors.Is(err, network.ErrResourceLimitExceeded) {
		return LocalLimit
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "connections per ip limit exceeded"), strings.Contains(msg, "rate limit exceeded"):
		return LocalLimit
	case strings.Contains(msg, "RESOURCE_LIMIT_EXCEEDED"):
		return RemoteLimit
	}
	return NoLimit
}
