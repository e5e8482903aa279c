// Package relay runs a circuit relay v2 server that ocap kernels (Go and
// JavaScript, in Node.js and in browsers) use to reach each other behind NATs.
//
// Circuits carry no signalled limit (relay.WithInfiniteLimits): a limit in the
// reservation marks the relayed connection as limited, and JavaScript kernels
// then refuse to run their protocol on it (reference §4.1). Abuse is bounded by
// the relay itself without signalling: total reservations, reservations per IP
// and per ASN, circuits in total and per peer, connections in total and per
// IP (Options), all of which also configure the host's resource manager
// (internal/p2phost), and optionally an allow-list of peers.
//
// Start fails when any listen address cannot be bound (a port another
// process holds is never shared: TCP listeners do not use SO_REUSEPORT).
// Health reports whether the relay is serving; Stats and the Prometheus
// collectors count reservations, circuits and refusals, and refusals are
// logged at WARN as one summary per interval.
package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/internal/p2phost"
)

// DefaultListenAddrs are upstream-compatible: TCP on 9002 and WebSocket on
// 9001 (what JavaScript kernels dial), plus QUIC-v1, WebTransport and
// WebRTC-direct on UDP 9002/9003 for browsers.
var DefaultListenAddrs = []string{
	"/ip4/0.0.0.0/tcp/9002",
	"/ip4/0.0.0.0/tcp/9001/ws",
	"/ip4/0.0.0.0/udp/9002/quic-v1",
	"/ip4/0.0.0.0/udp/9002/quic-v1/webtransport",
	"/ip4/0.0.0.0/udp/9003/webrtc-direct",
}

// Options configures a relay. Zero values mean the documented defaults; see
// limits.go for the limits.
type Options struct {
	// KeySeed is the relay's identity. Required.
	KeySeed identity.Seed
	// ListenAddrs default to DefaultListenAddrs. Every one must be bound.
	ListenAddrs []string
	// Limits bound the relay's use; they are enforced, never signalled.
	Limits Limits
	// AllowPeers, when not empty, is the only peers that may use the
	// relay: reserve a slot, or open a circuit as its source. Others get
	// PERMISSION_DENIED. Default: everyone.
	AllowPeers []peer.ID
	// PublicIP, when set, makes the relay also announce each IPv4 listen
	// address with this IP (a host behind 1:1 NAT, a cloud VM). Announce
	// lists further addresses to announce as they are (for example
	// /dns4/relay.example.com/tcp/9001/ws).
	PublicIP string
	Announce []string
	// TLS, when set, is used for /tls/ws (WSS) listen addresses.
	TLS *tls.Config
	// Logger receives the relay's logs. Default: discard.
	Logger *slog.Logger
	// RefusalLogInterval is how often refused requests are summarised in
	// one WARN line (only when there were some). Default 1 min.
	RefusalLogInterval time.Duration
	// Metrics, when set, receives the relay's collectors (ocapnet_relay_*)
	// and go-libp2p's (libp2p_relaysvc_*, libp2p_rcmgr_*, swarm, identify).
	// One relay per registry: a second is refused. go-libp2p's collectors
	// are process-wide, so two relays in one process add up there; the
	// ocapnet_relay_* ones and Stats are per relay.
	Metrics prometheus.Registerer
}

// Server is a running relay.
type Server struct {
	h      host.Host
	relay  *relayv2.Relay
	listen []string
	stats  *stats
	log    *slog.Logger

	stopOnce sync.Once
	stopped  chan struct{} // closed by Stop
	done     chan struct{} // closed when the refusal logger has ended
	stopErr  error
}

// ErrWeakSeed: a seed shorter than 64 hex digits was used on a listen
// address other than loopback.
var ErrWeakSeed = errors.New("key seed is public knowledge (shorter than 64 hex digits)")

// ErrInvalidOptions is wrapped by the errors Start returns for options that
// make no sense.
var ErrInvalidOptions = errors.New("relay: invalid options")

// Start starts the relay. It fails with ErrInvalidOptions for nonsense
// options, and with a *p2phost.ListenError (errors.Is p2phost.ErrListen)
// naming every listen address that could not be bound.
func Start(o Options) (*Server, error) {
	if len(o.ListenAddrs) == 0 {
		o.ListenAddrs = DefaultListenAddrs
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RefusalLogInterval == 0 {
		o.RefusalLogInterval = time.Minute
	}
	if o.RefusalLogInterval < 0 {
		return nil, fmt.Errorf("%w: negative RefusalLogInterval", ErrInvalidOptions)
	}
	lim, err := o.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	factory, err := addrsFactory(o.PublicIP, o.Announce)
	if err != nil {
		return nil, err
	}
	h, err := p2phost.New(p2phost.Options{
		Identity:                o.KeySeed.PrivateKey(),
		ListenAddrs:             o.ListenAddrs,
		WSSConfig:               o.TLS,
		Ping:                    true,  // kernels check their relay's liveness
		RelayClient:             false, // we are the relay service, not a client
		ForceReachabilityPublic: true,
		AddrsFactory:            factory,
		Metrics:                 o.Metrics,
		Limits:                  lim.hostLimits(),
		ConnManager:             lim.connManager(),
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	st, err := newStats(o.Metrics, h)
	if err != nil {
		h.Close()
		return nil, err
	}
	relayOpts := []relayv2.Option{relayv2.WithResources(lim.resources()), relayv2.WithMetricsTracer(st)}
	if len(o.AllowPeers) > 0 {
		relayOpts = append(relayOpts, relayv2.WithACL(newAllowList(o.AllowPeers)))
	}
	// WithInfiniteLimits must come after WithResources: it clears the
	// signalled limit that WithResources would set.
	relayOpts = append(relayOpts, relayv2.WithInfiniteLimits())
	r, err := relayv2.New(h, relayOpts...)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("relay: service: %w", err)
	}
	s := &Server{h: h, relay: r, listen: o.ListenAddrs, stats: st, log: o.Logger,
		stopped: make(chan struct{}), done: make(chan struct{})}
	st.health = s.Health
	go s.logRefusals(o.RefusalLogInterval)
	o.Logger.Info("relay started", "peer", h.ID(), "addrs", h.Addrs(), "limits", lim.String(), "allowPeers", len(o.AllowPeers))
	return s, nil
}

// addrsFactory announces the listen addresses, the same on publicIP, and
// the extra addresses.
func addrsFactory(publicIP string, announce []string) (func([]ma.Multiaddr) []ma.Multiaddr, error) {
	var extra []ma.Multiaddr
	for _, a := range announce {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: announce address %q: %v", ErrInvalidOptions, a, err)
		}
		extra = append(extra, m)
	}
	return func(addrs []ma.Multiaddr) []ma.Multiaddr {
		out := slices.Clone(addrs)
		if publicIP != "" {
			for _, a := range addrs {
				if ip, err := a.ValueForProtocol(ma.P_IP4); err == nil && ip != publicIP {
					if m, err := ma.NewMultiaddr(strings.Replace(a.String(), "/ip4/"+ip+"/", "/ip4/"+publicIP+"/", 1)); err == nil && !slices.ContainsFunc(out, m.Equal) {
						out = append(out, m)
					}
				}
			}
		}
		return append(out, extra...)
	}, nil
}

// ID returns the relay's peer ID.
func (s *Server) ID() peer.ID { return s.h.ID() }

// Addrs returns the relay's listen addresses, each ending in /p2p/<id>.
func (s *Server) Addrs() []string {
	var out []string
	for _, a := range s.h.Addrs() {
		out = append(out, a.String()+"/p2p/"+s.h.ID().String())
	}
	return out
}

// Host returns the libp2p host, for tests.
func (s *Server) Host() host.Host { return s.h }

// Stop stops the relay service, the refusal logger and the host. It is
// idempotent: later calls return the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		close(s.stopped)
		<-s.done
		s.stopErr = errors.Join(s.relay.Close(), s.h.Close())
	})
	return s.stopErr
}

// IsLoopbackOnly reports whether every address listens on loopback only.
func IsLoopbackOnly(addrs []string) bool {
	for _, a := range addrs {
		if !strings.HasPrefix(a, "/ip4/127.") && !strings.HasPrefix(a, "/ip6/::1/") {
			return false
		}
	}
	return len(addrs) > 0
}
