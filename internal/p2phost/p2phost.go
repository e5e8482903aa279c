// Package p2phost builds the go-libp2p hosts of ocapnet (the transport's and
// the relay's) from one plain options struct, so the option list is written
// once: identity, listen addresses, the transports ocapnet speaks (TCP,
// QUIC-v1, WebSocket with optional TLS, WebTransport, WebRTC-direct), TLS and
// Noise security, yamux, the relay client, ping, the connection manager and
// gater, an addresses factory, Prometheus metrics, and a resource manager
// whose every limit is derived from the caller's numbers (Limits).
//
// Its yamux (muxer.go) measures round-trip times rarely and keeps a
// ReadClock on each connection: when it last heard from the peer, which
// lets the transport skip liveness probes of connections that carry
// traffic.
//
// New also refuses to return a host that silently failed to listen: go-libp2p
// starts when at least one listen address works, so New checks that every
// configured address is bound by this process and otherwise fails with a
// *ListenError naming each address and its cause. TCP listeners do not use
// SO_REUSEPORT unless asked (Options.TCPReuseport), so a second process
// cannot bind a port this one holds and take part of its connections.
//
// Limit tells a local resource-limit error (this host's resource manager
// refused) from a remote one (the peer refused) and from other failures.
package p2phost

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	yamuxmux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	bconnmgr "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	webrtc "github.com/libp2p/go-libp2p/p2p/transport/webrtc"
	ws "github.com/libp2p/go-libp2p/p2p/transport/websocket"
	webtransport "github.com/libp2p/go-libp2p/p2p/transport/webtransport"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Transport names one go-libp2p transport.
type Transport string

// The transports ocapnet uses.
const (
	TCP          Transport = "tcp"
	QUIC         Transport = "quic-v1"
	WebSocket    Transport = "ws" // also WSS (/tls/ws) when Options.WSSConfig is set
	WebTransport Transport = "webtransport"
	WebRTCDirect Transport = "webrtc-direct"
)

// AllTransports is the default transport list.
var AllTransports = []Transport{TCP, QUIC, WebSocket, WebTransport, WebRTCDirect}

// ConnManager sets go-libp2p's connection manager: above High connections it
// closes the least valuable (untagged, unprotected, older than Grace) until
// Low remain.
type ConnManager struct {
	// Low and High default to Limits.Conns/2 and Limits.Conns − Conns/16, so
	// trimming starts before the resource manager refuses connections.
	// High must not exceed Limits.Conns.
	Low, High int
	// Grace is how long a new connection is never trimmed. Default 1 min.
	Grace time.Duration
}

// Options configures New. Zero values mean the documented defaults.
type Options struct {
	// Identity is the host's private key. Required.
	Identity crypto.PrivKey

	// ListenAddrs are the multiaddrs to listen on. Default none: the host
	// only dials. Every one must be bound when New returns. The relay
	// client listens on /p2p-circuit by itself (listing it is harmless).
	ListenAddrs []string

	// Transports default to AllTransports.
	Transports []Transport

	// WSSConfig, when set, makes /tls/ws (WSS) listen addresses usable.
	WSSConfig *tls.Config

	// TCPReuseport lets TCP listeners and dialers use SO_REUSEPORT (dialing
	// from the listen port, which helps NAT traversal). Default off: with
	// it, a second process can bind the same port and take a share of the
	// connections meant for this one. The environment variable
	// LIBP2P_TCP_REUSEPORT=false still turns it off when this is set.
	TCPReuseport bool

	// RelayClient enables the circuit relay v2 client transport: dialing
	// and accepting /p2p-circuit connections. Default off.
	RelayClient bool

	// Ping runs go-libp2p's ping service. Default off.
	Ping bool

	// YamuxRTTInterval is how often go-yamux pings each connection to
	// measure its round-trip time, whatever the traffic (both ends do it).
	// Default DefaultYamuxRTTInterval (10 min) instead of go-yamux's 30 s:
	// nothing in ocapnet reads the measurement, the transport's liveness
	// probe checks the connections, and at 2,000 idle connections the
	// 30 s pings were a fifth of the idle CPU.
	YamuxRTTInterval time.Duration

	// ForceReachabilityPublic tells the host it is publicly reachable
	// (servers such as the relay), instead of waiting for AutoNAT.
	ForceReachabilityPublic bool

	// DialTimeout bounds one dial of one address, transport and security
	// handshake included (the caller's context may end it sooner). Default
	// 15 s for every address; go-libp2p alone gives private and loopback
	// addresses only 5 s, which a loaded machine can miss.
	DialTimeout time.Duration

	// ConnManager configures the connection manager; see its defaults.
	ConnManager ConnManager

	// Gater, when set, is the connection gater.
	Gater connmgr.ConnectionGater

	// AddrsFactory, when set, rewrites the addresses the host announces.
	AddrsFactory config.AddrsFactory

	// Metrics, when set, receives go-libp2p's Prometheus collectors
	// (swarm, identify, resource manager, event bus, transports). Default:
	// go-libp2p's metrics are off.
	Metrics prometheus.Registerer

	// Limits configure the resource manager. Limits.Conns is required.
	Limits Limits

	// Extra options are appended after everything above (test hooks). Listen
	// addresses belong in ListenAddrs: New binds them itself, one by one.
	Extra []libp2p.Option
}

// ErrInvalidOptions is wrapped by every error New returns for options that
// make no sense.
var ErrInvalidOptions = errors.New("p2phost: invalid options")

// withDefaults returns o with defaults set, or an error for nonsense.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if o.Identity == nil {
		return o, bad("Identity is required")
	}
	if o.Transports == nil {
		o.Transports = AllTransports
	}
	for _, t := range o.Transports {
		if !slices.Contains(AllTransports, t) {
			return o, bad("unknown transport %q", t)
		}
	}
	if len(o.Transports) == 0 {
		return o, bad("no transport")
	}
	for _, a := range o.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return o, bad("listen address %q: %v", a, err)
		}
	}
	if o.Limits.Conns <= 0 {
		return o, bad("Limits.Conns %d: want a positive number of connections", o.Limits.Conns)
	}
	o.Limits = o.Limits.withDefaults()
	if err := o.Limits.validate(); err != nil {
		return o, err
	}
	if o.DialTimeout < 0 {
		return o, bad("negative DialTimeout")
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 15 * time.Second
	}
	if o.YamuxRTTInterval < 0 {
		return o, bad("negative YamuxRTTInterval")
	}
	if o.YamuxRTTInterval == 0 {
		o.YamuxRTTInterval = DefaultYamuxRTTInterval
	}
	cm := &o.ConnManager
	if cm.High == 0 {
		cm.High = max(1, o.Limits.Conns-o.Limits.Conns/16)
	}
	if cm.Low == 0 {
		cm.Low = min(cm.High, max(1, o.Limits.Conns/2))
	}
	if cm.Grace == 0 {
		cm.Grace = time.Minute
	}
	switch {
	case cm.Low < 0 || cm.High < 0 || cm.Grace < 0:
		return o, bad("negative connection manager setting %+v", *cm)
	case cm.Low > cm.High:
		return o, bad("ConnManager.Low %d exceeds High %d", cm.Low, cm.High)
	case cm.High > o.Limits.Conns:
		return o, bad("ConnManager.High %d exceeds Limits.Conns %d: the resource manager would refuse connections before trimming starts", cm.High, o.Limits.Conns)
	}
	return o, nil
}

// New builds and starts a host. It fails with ErrInvalidOptions for
// nonsense options and with a *ListenError when a listen address could not
// be bound.
func New(o Options) (host.Host, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	rm, err := newResourceManager(o.Limits, o.Metrics != nil)
	if err != nil {
		return nil, err
	}
	cm, err := bconnmgr.NewConnManager(o.ConnManager.Low, o.ConnManager.High, bconnmgr.WithGracePeriod(o.ConnManager.Grace))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("%w: connection manager: %v", ErrInvalidOptions, err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(o.Identity),
		libp2p.NoListenAddrs, // listen below, one address at a time
		libp2p.DefaultSecurity,
		libp2p.Muxer(yamuxmux.ID, newYamuxMuxer(o.YamuxRTTInterval)),
		libp2p.Ping(o.Ping),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.SwarmOpts(swarm.WithDialTimeout(o.DialTimeout), swarm.WithDialTimeoutLocal(o.DialTimeout)),
	}
	opts = append(opts, o.transportOptions()...)
	if o.RelayClient {
		opts = append(opts, libp2p.EnableRelay())
	} else {
		opts = append(opts, libp2p.DisableRelay())
	}
	if o.ForceReachabilityPublic {
		opts = append(opts, libp2p.ForceReachabilityPublic())
	}
	if o.Gater != nil {
		opts = append(opts, libp2p.ConnectionGater(o.Gater))
	}
	if o.AddrsFactory != nil {
		opts = append(opts, libp2p.AddrsFactory(o.AddrsFactory))
	}
	if o.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(o.Metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	opts = append(opts, o.Extra...)
	h, err := libp2p.New(opts...)
	if err != nil {
		// A host that failed to start may not have closed them.
		rm.Close()
		cm.Close()
		return nil, fmt.Errorf("p2phost: %w", err)
	}
	if err := listen(h, o.ListenAddrs); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// transportOptions returns the libp2p options for o.Transports.
func (o Options) transportOptions() []libp2p.Option {
	var opts []libp2p.Option
	for _, t := range o.Transports {
		switch t {
		case TCP:
			var tcpOpts []any
			if !o.TCPReuseport {
				tcpOpts = append(tcpOpts, tcp.DisableReuseport())
			}
			opts = append(opts, libp2p.Transport(tcp.NewTCPTransport, tcpOpts...))
		case QUIC:
			opts = append(opts, libp2p.Transport(quic.NewTransport))
		case WebSocket:
			var wsOpts []any
			if o.WSSConfig != nil {
				wsOpts = append(wsOpts, ws.WithTLSConfig(o.WSSConfig))
			}
			opts = append(opts, libp2p.Transport(ws.New, wsOpts...))
		case WebTransport:
			opts = append(opts, libp2p.Transport(webtransport.New))
		case WebRTCDirect:
			opts = append(opts, libp2p.Transport(webrtc.New))
		}
	}
	return opts
}
