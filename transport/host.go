package transport

import (
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/gologshim"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	webrtc "github.com/libp2p/go-libp2p/p2p/transport/webrtc"
	ws "github.com/libp2p/go-libp2p/p2p/transport/websocket"
	webtransport "github.com/libp2p/go-libp2p/p2p/transport/webtransport"
	ma "github.com/multiformats/go-multiaddr"
)

// RouteLibp2pLogs sends go-libp2p's own logs to h. go-libp2p logs through a
// process-wide handler, so the binary calls this once at start; libraries
// and tests leave it alone.
func RouteLibp2pLogs(h slog.Handler) {
	gologshim.SetDefaultHandler(h)
}

// newHost builds the libp2p host: Ed25519 identity from the seed, Noise and
// TLS security, Yamux, identify and ping, TCP, QUIC-v1, WebSocket (WSS with a
// certificate), WebTransport and WebRTC-direct, the circuit relay v2 client,
// upstream's connection gater, and a connection manager that never trims
// peers with a channel (they are protected).
func newHost(o *Options, relayAddrs []ma.Multiaddr, limits *addrLimiter) (host.Host, error) {
	cm, err := connmgr.NewConnManager(o.MaxConnections+64, 2*o.MaxConnections+128, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, err
	}
	wsOpts := []interface{}{}
	if o.WSSConfig != nil {
		wsOpts = append(wsOpts, ws.WithTLSConfig(o.WSSConfig))
	}
	opts := []libp2p.Option{
		libp2p.Identity(o.KeySeed.PrivateKey()),
		libp2p.ListenAddrStrings(o.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Transport(ws.New, wsOpts...),
		libp2p.Transport(webtransport.New),
		libp2p.Transport(webrtc.New),
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
		libp2p.EnableRelay(),
		libp2p.Ping(true),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(newGater(o.AllowedWSHosts, relayAddrs, limits)),
	}
	opts = append(opts, o.hostOptions...)
	if o.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(o.Metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	return libp2p.New(opts...)
}

// gater is upstream's connection gater (reference §4.3): it only filters
// outbound dials, denying plain (unencrypted) WebSocket to hosts that are
// neither private nor allowed. Hosts of plain-ws relays are allowed.
type gater struct {
	allowed map[string]bool
	accept  *addrLimiter // inbound connections per source address (nil: unlimited)
}

func newGater(allowedWSHosts []string, relayAddrs []ma.Multiaddr, accept *addrLimiter) *gater {
	g := &gater{allowed: map[string]bool{}, accept: accept}
	for _, h := range allowedWSHosts {
		g.allowed[h] = true
	}
	for _, a := range relayAddrs {
		if isPlainWS(a) {
			g.allowed[addrHost(a)] = true
		}
	}
	return g
}

func (g *gater) InterceptPeerDial(peer.ID) bool { return true }

func (g *gater) InterceptAddrDial(_ peer.ID, a ma.Multiaddr) bool {
	if !isPlainWS(a) {
		return true
	}
	h := addrHost(a)
	return isPrivateAddress(h) || g.allowed[h]
}

// InterceptAccept limits the rate of inbound connections per source address
// and subnet, before any security handshake is spent on them.
func (g *gater) InterceptAccept(c network.ConnMultiaddrs) bool {
	return g.accept == nil || g.accept.allow(c.RemoteMultiaddr())
}

func (g *gater) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}

func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// isPlainWS reports whether a uses WebSocket without TLS (ws, not wss or
// tls/ws).
func isPlainWS(a ma.Multiaddr) bool {
	hasWS, secure := false, false
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_WS:
			hasWS = true
		case ma.P_WSS, ma.P_TLS:
			secure = true
		}
	}
	return hasWS && !secure
}

// addrHost returns the value of the first ip4/ip6/dns4/dns6/dnsaddr
// component, as upstream's getHost (plain /dns/ is not recognised).
func addrHost(a ma.Multiaddr) string {
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_IP4, ma.P_IP6, ma.P_DNS4, ma.P_DNS6, ma.P_DNSADDR:
			return c.Value()
		}
	}
	return ""
}

var ipv6Like = regexp.MustCompile(`^[0-9a-f]*:[0-9a-f:]+$`)

// isPrivateAddress is upstream's table (reference §4.3, tests §8.10 #123):
// localhost, ::1, IPv6-looking text starting with fc, fd or fe80:, and dotted
// IPv4 in 127/8, 10/8, 172.16/12 or 192.168/16.
func isPrivateAddress(host string) bool {
	h := strings.ToLower(host)
	if h == "localhost" || h == "::1" {
		return true
	}
	if ipv6Like.MatchString(h) {
		return strings.HasPrefix(h, "fc") || strings.HasPrefix(h, "fd") || strings.HasPrefix(h, "fe80:")
	}
	ip := net.ParseIP(h)
	if ip == nil || ip.To4() == nil || strings.Count(h, ".") != 3 {
		return false
	}
	v4 := ip.To4()
	switch {
	case v4[0] == 127, v4[0] == 10:
		return true
	case v4[0] == 172 && v4[1] >= 16 && v4[1] <= 31:
		return true
	case v4[0] == 192 && v4[1] == 168:
		return true
	}
	return false
}

// parseHint parses a hint multiaddr. It must end in /p2p/<id>: a hint whose
// last /p2p/ is the target is a direct address (returned without the
// suffix), any other is a relay (reference §4.2).
func parseHint(target peer.ID, hint string) (addr ma.Multiaddr, relay bool, err error) {
	a, err := ma.NewMultiaddr(hint)
	if err != nil {
		return nil, false, fmt.Errorf("%w: hint %q: %v", ErrInvalidPeer, hint, err)
	}
	rest, last := ma.SplitLast(a)
	if last == nil || last.Protocol().Code != ma.P_P2P {
		// A bare transport address is taken as a direct address of the
		// target.
		return a, false, nil
	}
	id, err := peer.Decode(last.Value())
	if err != nil {
		return nil, false, fmt.Errorf("%w: hint %q: %v", ErrInvalidPeer, hint, err)
	}
	if id == target {
		return rest, false, nil
	}
	return a, true, nil
}
