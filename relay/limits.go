package relay

import (
	"fmt"
	"time"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/ocapnet/ocapnet/internal/p2phost"
)

// Limits bound the relay's use. Zero values mean the documented defaults.
// They are enforced by the relay service and the host's resource manager
// (derived as in hostLimits), never signalled to clients.
type Limits struct {
	// MaxReservations is the most reservations held at once. Default 1024.
	MaxReservations int
	// MaxReservationsPerIP is the most reservations from one IP address.
	// Default 8. Behind a reverse proxy on the same machine every peer
	// comes from 127.0.0.1: terminate WSS in the relay (Options.TLS).
	MaxReservationsPerIP int
	// MaxReservationsPerASN is the most reservations from one autonomous
	// system (go-libp2p looks up IPv6 addresses only). Default 4 ×
	// MaxReservationsPerIP.
	MaxReservationsPerASN int
	// ReservationTTL is how long a reservation lasts unless refreshed
	// (clients refresh before it ends). Default 1 h.
	ReservationTTL time.Duration
	// MaxCircuits is the most open circuits per peer, counted separately
	// as source and as destination. Default 64.
	MaxCircuits int
	// MaxCircuitsTotal is the most open circuits at once. Beyond it the
	// resource manager refuses the circuit's stop stream and the source is
	// answered CONNECTION_FAILED (go-libp2p's relay has no total of its
	// own). Default 1024.
	MaxCircuitsTotal int
	// MaxConns is the most connections at once (every reserved peer holds
	// one, and so does every circuit source). Default MaxReservations +
	// MaxCircuitsTotal + max(256, an eighth of that): room for peers that
	// only ping or are dialling twice.
	MaxConns int
	// MaxConnsPerIP is the most connections at once from one IP address.
	// Default 4 × MaxReservationsPerIP.
	MaxConnsPerIP int
	// BufferSize is the copy buffer per circuit direction. Default 2048.
	BufferSize int
}

// withDefaults returns l with defaults set, or an error for nonsense.
func (l Limits) withDefaults() (Limits, error) {
	for _, v := range []int{l.MaxReservations, l.MaxReservationsPerIP, l.MaxReservationsPerASN, l.MaxCircuits,
		l.MaxCircuitsTotal, l.MaxConns, l.MaxConnsPerIP, l.BufferSize} {
		if v < 0 {
			return l, fmt.Errorf("%w: negative limit in %+v", ErrInvalidOptions, l)
		}
	}
	if l.ReservationTTL < 0 {
		return l, fmt.Errorf("%w: negative ReservationTTL", ErrInvalidOptions)
	}
	set := func(dst *int, v int) {
		if *dst == 0 {
			*dst = v
		}
	}
	set(&l.MaxReservations, 1024)
	set(&l.MaxReservationsPerIP, 8)
	set(&l.MaxReservationsPerASN, 4*l.MaxReservationsPerIP)
	set(&l.MaxCircuits, 64)
	set(&l.MaxCircuitsTotal, 1024)
	held := l.MaxReservations + l.MaxCircuitsTotal
	set(&l.MaxConns, held+max(256, held/8))
	set(&l.MaxConnsPerIP, 4*l.MaxReservationsPerIP)
	set(&l.BufferSize, 2048)
	if l.ReservationTTL == 0 {
		l.ReservationTTL = time.Hour
	}
	switch {
	case l.MaxConns <= l.MaxReservations:
		return l, fmt.Errorf("%w: MaxConns %d must exceed MaxReservations %d (each reserved peer holds a connection)", ErrInvalidOptions, l.MaxConns, l.MaxReservations)
	case l.MaxConnsPerIP < l.MaxReservationsPerIP:
		return l, fmt.Errorf("%w: MaxConnsPerIP %d is below MaxReservationsPerIP %d", ErrInvalidOptions, l.MaxConnsPerIP, l.MaxReservationsPerIP)
	case l.MaxCircuits > l.MaxCircuitsTotal:
		return l, fmt.Errorf("%w: MaxCircuits %d per peer exceeds MaxCircuitsTotal %d", ErrInvalidOptions, l.MaxCircuits, l.MaxCircuitsTotal)
	}
	return l, nil
}

// hostLimits are the resource manager's numbers: MaxConns connections,
// MaxConnsPerIP per IP, and per peer the streams of MaxCircuits circuits
// as source (hop) and as destination (stop) plus 16 for its reservation,
// identify and ping. p2phost.Limits.Derive documents the rest.
func (l Limits) hostLimits() p2phost.Limits {
	return p2phost.Limits{
		Conns:                l.MaxConns,
		ConnsPerIP:           l.MaxConnsPerIP,
		StreamsPerPeer:       2*l.MaxCircuits + 16,
		RelayCircuits:        l.MaxCircuitsTotal,
		RelayCircuitsPerPeer: l.MaxCircuits,
		RelayBufferSize:      l.BufferSize,
	}
}

// connManager trims only above what reservations and circuits can hold:
// peers with a reservation or a circuit are tagged by the relay and trimmed
// last, and trimming stops at MaxReservations + MaxCircuitsTotal, so it
// only ever closes connections that hold neither. It starts a little
// before MaxConns, so that new peers are not refused by the resource
// manager first.
func (l Limits) connManager() p2phost.ConnManager {
	high := max(1, l.MaxConns-max(1, l.MaxConns/64))
	return p2phost.ConnManager{Low: min(high, l.MaxReservations+l.MaxCircuitsTotal), High: high, Grace: time.Minute}
}

// resources are the relay service's own limits.
func (l Limits) resources() relayv2.Resources {
	return relayv2.Resources{
		ReservationTTL:        l.ReservationTTL,
		MaxReservations:       l.MaxReservations,
		MaxCircuits:           l.MaxCircuits,
		BufferSize:            l.BufferSize,
		MaxReservationsPerIP:  l.MaxReservationsPerIP,
		MaxReservationsPerASN: l.MaxReservationsPerASN,
	}
}

// String lists the limits for the start-up log.
func (l Limits) String() string {
	return fmt.Sprintf("reservations=%d perIP=%d perASN=%d ttl=%v circuits=%d perPeer=%d conns=%d connsPerIP=%d buffer=%d",
		l.MaxReservations, l.MaxReservationsPerIP, l.MaxReservationsPerASN, l.ReservationTTL, l.MaxCircuitsTotal,
		l.MaxCircuits, l.MaxConns, l.MaxConnsPerIP, l.BufferSize)
}
