// Package relay runs a circuit relay v2 server that ocap kernels (Go and
// JavaScript, in Node.js and in browsers) use to reach each other behind NATs.
//
// Circuits carry no signalled limit (relay.WithInfiniteLimits): a limit in the
// reservation marks the relayed connection as limited, and JavaScript kernels
// then refuse to run their protocol on it (reference §4.1). Abuse is bounded by
// the relay itself without signalling: total reservations, reservations per IP
// and per ASN, circuits per peer and a buffer per circuit (Options).
package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	webrtc "github.com/libp2p/go-libp2p/p2p/transport/webrtc"
	ws "github.com/libp2p/go-libp2p/p2p/transport/websocket"
	webtransport "github.com/libp2p/go-libp2p/p2p/transport/webtransport"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ocapnet/ocapnet/identity"
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

// Options configures a relay. Zero values mean the documented defaults.
type Options struct {
	// KeySeed is the relay's identity. Required.
	KeySeed identity.Seed
	// ListenAddrs default to DefaultListenAddrs.
	ListenAddrs []string
	// MaxReservations (default 1024), MaxReservationsPerIP (default 8) and
	// MaxCircuits per peer (default 64) bound the relay's use; they are
	// enforced, never signalled to clients.
	MaxReservations      int
	MaxReservationsPerIP int
	MaxCircuits          int
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
}

// Server is a running relay.
type Server struct {
	h     host.Host
	relay *relayv2.Relay
}

// ErrWeakSeed: a seed shorter than 64 hex digits was used on a listen
// address other than loopback.
var ErrWeakSeed = errors.New("key seed is public knowledge (shorter than 64 hex digits)")

// Start starts the relay.
func Start(o Options) (*Server, error) {
	if len(o.ListenAddrs) == 0 {
		o.ListenAddrs = DefaultListenAddrs
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var extra []ma.Multiaddr
	for _, a := range o.Announce {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("relay: announce address %q: %w", a, err)
		}
		extra = append(extra, m)
	}
	factory := func(addrs []ma.Multiaddr) []ma.Multiaddr {
		out := slices.Clone(addrs)
		if o.PublicIP != "" {
			for _, a := range addrs {
				if ip, err := a.ValueForProtocol(ma.P_IP4); err == nil && ip != o.PublicIP {
					if m, err := ma.NewMultiaddr(strings.Replace(a.String(), "/ip4/"+ip+"/", "/ip4/"+o.PublicIP+"/", 1)); err == nil && !slices.ContainsFunc(out, m.Equal) {
						out = append(out, m)
					}
				}
			}
		}
		return append(out, extra...)
	}
	var wsOpts []any
	if o.TLS != nil {
		wsOpts = append(wsOpts, ws.WithTLSConfig(o.TLS))
	}
	h, err := libp2p.New(
		libp2p.Identity(o.KeySeed.PrivateKey()),
		libp2p.AddrsFactory(factory),
		libp2p.ListenAddrStrings(o.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Transport(ws.New, wsOpts...),
		libp2p.Transport(webtransport.New),
		libp2p.Transport(webrtc.New),
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
		libp2p.DisableRelay(), // we are the relay service, not a client
		libp2p.ForceReachabilityPublic(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("relay: host: %w", err)
	}
	rc := relayv2.DefaultResources()
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	rc.MaxReservations = 1024
	rc.MaxReservationsPerIP = 8
	rc.MaxCircuits = 64
	set(&rc.MaxReservations, o.MaxReservations)
	set(&rc.MaxReservationsPerIP, o.MaxReservationsPerIP)
	set(&rc.MaxCircuits, o.MaxCircuits)
	// WithInfiniteLimits must come after WithResources: it clears the
	// signalled limit that WithResources would set.
	r, err := relayv2.New(h, relayv2.WithResources(rc), relayv2.WithInfiniteLimits())
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("relay: service: %w", err)
	}
	o.Logger.Info("relay started", "peer", h.ID(), "addrs", h.Addrs())
	return &Server{h: h, relay: r}, nil
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

// Stop stops the relay service and its host.
func (s *Server) Stop() error {
	err := s.relay.Close()
	return errors.Join(err, s.h.Close())
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
