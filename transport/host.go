package transport

import (
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/gologshim"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ocapnet/ocapnet/internal/p2phost"
)

// RouteLibp2pLogs sends go-libp2p's own logs to h. go-libp2p logs through a
// process-wide handler, so the binary calls this once at start; libraries
// and tests leave it alone.
func RouteLibp2pLogs(h slog.Handler) {
	gologshim.SetDefaultHandler(h)
}

// newHost builds the libp2p host with internal/p2phost (the builder the
// relay uses too): Ed25519 identity from the seed, Noise and TLS security,
// Yamux, identify and ping, TCP, QUIC-v1, WebSocket (WSS with a
// certificate), WebTransport and WebRTC-direct, the circuit relay v2 client,
// upstream's connection gater with our per-address rates, a connection
// manager that never trims peers with a channel (they are protected), and a
// resource manager whose limits are derived from ours (hostLimits).
func newHost(o *Options, relayAddrs []ma.Multiaddr, limits *addrLimiter) (host.Host, error) {
	l := hostLimits(o.Config)
	return p2phost.New(p2phost.Options{
		Identity:    o.KeySeed.PrivateKey(),
		ListenAddrs: o.ListenAddrs,
		WSSConfig:   o.WSSConfig,
		RelayClient: true,
		Ping:        true,
		DialTimeout: o.DialTimeout,
		Limits:      l,
		ConnManager: p2phost.ConnManager{Low: o.MaxConnections, High: l.Conns - l.Conns/16, Grace: time.Minute},
		Gater:       newGater(o.AllowedWSHosts, relayAddrs, limits),
		Metrics:     o.Metrics,
		Extra:       o.hostOptions,
	})
}

// hostLimits derives go-libp2p's resource limits from the transport's
// (every limit is ours, docs/PROTOCOL.md "Limits"): one connection per
// channel, with room for a quarter more (relays, dial races, peers whose
// channel is being replaced) and 64 spare; every relayed channel is a stream
// on the connection to its relay, so one peer (a relay) may carry as many
// streams as there are channels; the other limits follow from these
// (p2phost.Limits.Derive: ping and identify streams per connection, the
// transient scope for handshakes, file descriptors, memory).
func hostLimits(c Config) p2phost.Limits {
	conns := c.MaxConnections + c.MaxConnections/4 + 64
	return p2phost.Limits{
		Conns:          conns,
		StreamsPerPeer: c.MaxConnections + 64,
		Handshakes:     max(64, c.MaxPendingHandshakes),
	}
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
