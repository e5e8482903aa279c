package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	msmux "github.com/multiformats/go-multistream"

	"github.com/ocapnet/ocapnet/internal/p2phost"
)

// errClass is how the reconnection loop treats a dial or handshake error.
type errClass int

const (
	// classTransient errors are retried and never count towards the
	// permanent-failure heuristic: timeouts, resets, resource limits, swarm
	// dial backoff, a failed or timed-out handshake.
	classTransient errClass = iota
	// classUnreachable errors are retried and counted: identical ones over
	// a long time mark the peer failed. Connection refused, no route to
	// host or network, unknown host name, no addresses at all, relay says
	// the target has no reservation, the peer does not speak our protocol,
	// a different peer at the address.
	classUnreachable
	// classFatal errors are not retried: the transport was stopped, or the
	// connection gater forbids every address (configuration, not network).
	classFatal
)

// classify returns the class of err and a short stable code for it, used for
// the permanent-failure history and in PeerInfo.LastError. The table is in
// docs/PROTOCOL.md; it is built from the errors go-libp2p v0.51 really
// returns (swarm.DialError wraps one TransportError per address, each
// unwrapping to the syscall error).
func classify(err error) (errClass, string) {
	switch {
	case err == nil:
		return classTransient, ""
	case errors.Is(err, ErrStopped), errors.Is(err, context.Canceled):
		return classFatal, "STOPPED"
	case errors.Is(err, swarm.ErrGaterDisallowedConnection), errors.Is(err, swarm.ErrAllDialsFailed) && allGated(err):
		return classFatal, "GATED"
	case p2phost.Limit(err) == p2phost.LocalLimit:
		// Our own resource limits: never evidence against the peer.
		return classTransient, "LOCAL_LIMIT"
	case p2phost.Limit(err) == p2phost.RemoteLimit:
		return classTransient, "REMOTE_LIMIT"
	case errors.Is(err, syscall.ECONNREFUSED):
		return classUnreachable, "ECONNREFUSED"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return classUnreachable, "EHOSTUNREACH"
	case errors.Is(err, syscall.ENETUNREACH):
		return classUnreachable, "ENETUNREACH"
	case isNotFound(err):
		return classUnreachable, "ENOTFOUND"
	case errors.Is(err, swarm.ErrNoAddresses), errors.Is(err, swarm.ErrNoGoodAddresses):
		return classUnreachable, "NO_ADDRESSES"
	case strings.Contains(err.Error(), "NO_RESERVATION"):
		return classUnreachable, "NO_RESERVATION"
	case errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}), strings.Contains(err.Error(), "protocols not supported"):
		return classUnreachable, "PROTOCOL_NOT_SUPPORTED"
	case strings.Contains(err.Error(), "peer id mismatch"):
		return classUnreachable, "PEER_ID_MISMATCH"
	case errors.Is(err, swarm.ErrDialBackoff):
		return classTransient, "DIAL_BACKOFF"
	case errors.Is(err, ErrHandshakeFailed):
		return classTransient, "HANDSHAKE_FAILED"
	case errors.Is(err, ErrConnectionLimit):
		return classTransient, "CONNECTION_LIMIT"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, network.ErrReset):
		return classTransient, "ECONNRESET"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return classTransient, "ETIMEDOUT"
	}
	return classTransient, "UNKNOWN"
}

func allGated(err error) bool {
	var de *swarm.DialError
	if !errors.As(err, &de) || len(de.DialErrors) == 0 {
		return false
	}
	for _, te := range de.DialErrors {
		if !errors.Is(te.Cause, swarm.ErrGaterDisallowedConnection) {
			return false
		}
	}
	return true
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
