package p2phost

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/x/rate"
)

// StreamWindow is the memory a yamux stream reserves from its connection's
// scope when it opens (go-yamux v5 initialStreamWindow, 256 KiB). Memory
// limits below are sized in these units so that memory never refuses a
// stream that the stream counts allow.
const StreamWindow = 256 << 10

// relayMessageSize is the memory the relay service and client reserve on a
// hop or stop stream while they read its protobuf message (circuitv2
// maxMessageSize).
const relayMessageSize = 4096

// Limits are the numbers the resource manager is configured from. Every
// go-libp2p limit (system, transient, allow-listed, service, protocol, peer,
// connection and stream scopes, connections per IP and the connection rate
// per IP) is derived from them as documented on each field and in Derive;
// nothing comes from go-libp2p's defaults or from the machine's memory
// (limits.AutoScale, which gives 504 connections and 252 ping streams on a
// 24 GiB machine). Zero values mean the documented defaults.
type Limits struct {
	// Conns is the most connections open at once, inbound and outbound
	// together, over every transport. Required. It is the system limit in
	// each direction and in total, and the ping and identify services'
	// stream limit in each direction (one of each per connection).
	Conns int

	// ConnsPerPeer is the most connections to one peer. Default 8: the
	// swarm dials up to 8 addresses of a peer at once, and a dial race
	// must not be refused.
	ConnsPerPeer int

	// ConnsPerIP is the most connections at once from one IPv4 address
	// (/32) or IPv6 /56, and 8 times that from one IPv6 /48. Loopback
	// (127.0.0.0/8 and ::1) is never limited. Default 8 × ConnsPerPeer.
	ConnsPerIP int

	// ConnRatePerIP is how many new connections per second one IPv4
	// address (/32) or IPv6 /56 may open after a burst of ConnsPerIP
	// (5 times both for an IPv6 /48). Loopback is never limited. Default
	// ConnsPerIP/10: a NAT's whole allowance again after 10 s.
	ConnRatePerIP float64

	// Handshakes is the most connections still being set up (security and
	// muxer negotiation, before they belong to a peer) at once. Streams
	// still negotiating their protocol may be 4 times as many. This is
	// go-libp2p's transient scope. Default Conns/4, at least 64.
	Handshakes int

	// StreamsPerPeer is the most streams with one peer at once, in each
	// direction and in total. A relay client's circuits through one relay
	// all count to the relay peer. Default 256, at most Streams.
	StreamsPerPeer int

	// Streams is the most streams open at once, in each direction and in
	// total. Default 4 × Conns + 2 × RelayCircuits (identify, ping and a
	// protocol stream per connection, plus a hop and a stop stream per
	// relayed circuit).
	Streams int

	// Memory is the most memory, in bytes, that go-libp2p may reserve in
	// total. Default StreamWindow × Streams: every stream the counts allow
	// can open. Window growth beyond the first 256 KiB is granted only while
	// less than half of Memory is reserved (yamux's priority), so heavy
	// traffic keeps windows small instead of growing memory.
	Memory int64

	// StreamMemory is the most memory one stream's own scope may reserve
	// (go-libp2p's protocols reserve at most 8 KiB there; yamux windows
	// count to the connection). Default 1 MiB.
	StreamMemory int64

	// FD is the most file descriptors for connections (TCP and WebSocket
	// use one each, QUIC, WebTransport and WebRTC none). Default Conns,
	// capped at the process's open-file limit less 256 (for listeners,
	// the store and logs). An explicit FD above the open-file limit is an
	// error.
	FD int

	// RelayCircuits is the most circuits the relay service carries at
	// once. Default 0: the host runs no relay service, and the service
	// scope libp2p.relay/v2 admits no streams.
	RelayCircuits int

	// RelayCircuitsPerPeer is the most circuits one peer is the source of
	// at once, and separately the most it is the destination of (the relay
	// service checks each side). Default 16 when RelayCircuits is set.
	RelayCircuitsPerPeer int

	// RelayBufferSize is the relay service's copy buffer per circuit
	// direction, reserved from the service scope. Default 2048.
	RelayBufferSize int
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	set := func(dst *int, v int) {
		if *dst == 0 {
			*dst = v
		}
	}
	set(&l.ConnsPerPeer, 8)
	set(&l.ConnsPerIP, 8*l.ConnsPerPeer)
	if l.ConnRatePerIP == 0 {
		l.ConnRatePerIP = float64(l.ConnsPerIP) / 10
	}
	set(&l.Handshakes, max(64, l.Conns/4))
	if l.RelayCircuits > 0 {
		set(&l.RelayCircuitsPerPeer, 16)
		set(&l.RelayBufferSize, 2048)
	}
	set(&l.Streams, 4*l.Conns+2*l.RelayCircuits)
	set(&l.StreamsPerPeer, min(256, l.Streams))
	if l.Memory == 0 {
		l.Memory = StreamWindow * int64(l.Streams)
	}
	if l.StreamMemory == 0 {
		l.StreamMemory = 1 << 20
	}
	if l.FD == 0 {
		l.FD = l.Conns
		if nofile := openFileLimit(); nofile > 0 {
			l.FD = max(1, min(l.FD, nofile-256))
		}
	}
	return l
}

// validate reports nonsense in l, which has its defaults set.
func (l Limits) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: limits: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	switch {
	case l.Conns <= 0:
		return bad("Conns %d: want a positive number of connections", l.Conns)
	case l.ConnsPerPeer < 0 || l.ConnsPerIP < 0 || l.Handshakes < 0 || l.StreamsPerPeer < 0 || l.Streams < 0 ||
		l.FD < 0 || l.Memory < 0 || l.StreamMemory < 0 || l.RelayCircuits < 0 || l.RelayCircuitsPerPeer < 0 ||
		l.RelayBufferSize < 0 || l.ConnRatePerIP < 0 || math.IsNaN(l.ConnRatePerIP) || math.IsInf(l.ConnRatePerIP, 0):
		return bad("negative or not-a-number limit in %+v", l)
	case l.ConnsPerPeer > l.Conns:
		return bad("ConnsPerPeer %d exceeds Conns %d", l.ConnsPerPeer, l.Conns)
	case l.StreamsPerPeer > l.Streams:
		return bad("StreamsPerPeer %d exceeds Streams %d", l.StreamsPerPeer, l.Streams)
	case l.RelayCircuitsPerPeer > l.RelayCircuits && l.RelayCircuits > 0:
		return bad("RelayCircuitsPerPeer %d exceeds RelayCircuits %d", l.RelayCircuitsPerPeer, l.RelayCircuits)
	case l.RelayCircuits > 0 && 2*l.RelayCircuitsPerPeer+1 > l.StreamsPerPeer:
		return bad("StreamsPerPeer %d is below what RelayCircuitsPerPeer %d needs (2 × circuits + 1)", l.StreamsPerPeer, l.RelayCircuitsPerPeer)
	case l.Memory < StreamWindow:
		return bad("Memory %d is below one stream window (%d bytes)", l.Memory, StreamWindow)
	}
	if nofile := openFileLimit(); nofile > 0 && l.FD > nofile {
		return bad("FD %d exceeds the process's open-file limit (RLIMIT_NOFILE %d)", l.FD, nofile)
	}
	return nil
}

// scope is one go-libp2p scope's limit with the same number in each
// direction and in total.
func scope(streams, conns, fd int, memory int64) rcmgr.BaseLimit {
	return rcmgr.BaseLimit{
		Streams: streams, StreamsInbound: streams, StreamsOutbound: streams,
		Conns: conns, ConnsInbound: conns, ConnsOutbound: conns,
		FD: fd, Memory: memory,
	}
}

// Derive returns go-libp2p's limit configuration from l (defaults set):
//
//	scope                      streams (in / out / total)         conns (each)   FD            memory
//	system, allow-listed sys.  Streams                            Conns          FD            Memory
//	transient, allow-l. trans. 4 × Handshakes                     Handshakes     Handshakes    Memory/4
//	peer (every peer)          StreamsPerPeer                     ConnsPerPeer   ConnsPerPeer  StreamWindow × StreamsPerPeer + 1 MiB × ConnsPerPeer
//	connection                 —                                  1              1             StreamWindow × StreamsPerPeer + 1 MiB
//	stream                     1                                  —              —             StreamMemory
//	service/protocol default   Streams                            —              —             Memory
//	  per peer                 StreamsPerPeer                     —              —             peer memory
//	identify service, /ipfs/id/1.0.0, /ipfs/id/push/1.0.0
//	                           Conns / Conns / 2 × Conns          —              —             8 KiB × 2 × Conns
//	  per peer                 2 × ConnsPerPeer / … / 4 × ConnsPerPeer                         8 KiB × 4 × ConnsPerPeer
//	ping service, /ipfs/ping/1.0.0
//	                           Conns / Conns / 2 × Conns          —              —             128 B × 2 × Conns
//	  per peer                 ConnsPerPeer / … / 2 × ConnsPerPeer                             128 B × 2 × ConnsPerPeer
//	relay service libp2p.relay/v2 (R = RelayCircuits, r = RelayCircuitsPerPeer, B = RelayBufferSize)
//	                           R + Conns / R / 2R + Conns         —              —             2R × B × 5/4 + (2R + Conns) × 4 KiB
//	  per peer                 r + 1 / r / 2r + 1                                              (2r + 1) × 4 KiB
//	hop protocol               R + Conns / Conns / R + 2 × Conns                                (R + 2 × Conns) × 4 KiB
//	  per peer                 r + 1 / StreamsPerPeer / r + 1 + StreamsPerPeer                 peer memory
//	stop protocol              Conns / R / R + Conns                                            (R + Conns) × 4 KiB
//	  per peer                 StreamsPerPeer / r / StreamsPerPeer + r                         peer memory
//
// Hop streams come in for reservations (one per connected peer at most)
// and for circuits a peer opens as source; a relay client opens one per
// reservation and per circuit it dials. Stop streams go out to a circuit's
// destination, and come in to a relay client for each relayed connection
// it accepts. The relay service reserves 2 × B per circuit at high priority
// (refused above 80 % of its memory, hence 5/4) and 4 KiB per stream while
// it reads the stream's message.
func (l Limits) Derive() rcmgr.ConcreteLimitConfig {
	const (
		idMsg   = 8 << 10 // identify's signedIDSize
		pingMsg = 128     // ping reserves 2 × 32 bytes per stream
	)
	peerMem := StreamWindow*int64(l.StreamsPerPeer) + (1<<20)*int64(l.ConnsPerPeer)
	cfg := rcmgr.ScalingLimitConfig{
		SystemBaseLimit:               scope(l.Streams, l.Conns, l.FD, l.Memory),
		AllowlistedSystemBaseLimit:    scope(l.Streams, l.Conns, l.FD, l.Memory),
		TransientBaseLimit:            scope(4*l.Handshakes, l.Handshakes, l.Handshakes, l.Memory/4),
		AllowlistedTransientBaseLimit: scope(4*l.Handshakes, l.Handshakes, l.Handshakes, l.Memory/4),
		PeerBaseLimit:                 scope(l.StreamsPerPeer, l.ConnsPerPeer, l.ConnsPerPeer, peerMem),
		ConnBaseLimit:                 scope(0, 1, 1, StreamWindow*int64(l.StreamsPerPeer)+1<<20),
		StreamBaseLimit:               scope(1, 0, 0, l.StreamMemory),
		ServiceBaseLimit:              scope(l.Streams, 0, 0, l.Memory),
		ProtocolBaseLimit:             scope(l.Streams, 0, 0, l.Memory),
		ServicePeerBaseLimit:          scope(l.StreamsPerPeer, 0, 0, peerMem),
		ProtocolPeerBaseLimit:         scope(l.StreamsPerPeer, 0, 0, peerMem),
	}
	// stream limits with different numbers per direction
	streams := func(in, out int, memory int64) rcmgr.BaseLimit {
		return rcmgr.BaseLimit{StreamsInbound: in, StreamsOutbound: out, Streams: in + out, Memory: memory}
	}
	none := rcmgr.BaseLimitIncrease{}

	id := streams(l.Conns, l.Conns, idMsg*2*int64(l.Conns))
	idPeer := streams(2*l.ConnsPerPeer, 2*l.ConnsPerPeer, idMsg*4*int64(l.ConnsPerPeer))
	cfg.AddServiceLimit(identify.ServiceName, id, none)
	cfg.AddServicePeerLimit(identify.ServiceName, idPeer, none)
	for _, p := range []protocol.ID{identify.ID, identify.IDPush} {
		cfg.AddProtocolLimit(p, id, none)
		cfg.AddProtocolPeerLimit(p, idPeer, none)
	}

	pg := streams(l.Conns, l.Conns, pingMsg*2*int64(l.Conns))
	pgPeer := streams(l.ConnsPerPeer, l.ConnsPerPeer, pingMsg*2*int64(l.ConnsPerPeer))
	cfg.AddServiceLimit(ping.ServiceName, pg, none)
	cfg.AddServicePeerLimit(ping.ServiceName, pgPeer, none)
	cfg.AddProtocolLimit(ping.ID, pg, none)
	cfg.AddProtocolPeerLimit(ping.ID, pgPeer, none)

	r, rp := l.RelayCircuits, l.RelayCircuitsPerPeer
	svcMem := int64(2*r*l.RelayBufferSize)*5/4 + int64(2*r+l.Conns)*relayMessageSize
	if r == 0 {
		svcMem = 0
	}
	cfg.AddServiceLimit(relayv2.ServiceName, streams(boolInt(r > 0)*(r+l.Conns), r, svcMem), none)
	cfg.AddServicePeerLimit(relayv2.ServiceName, streams(boolInt(r > 0)*(rp+1), rp, int64(2*rp+1)*relayMessageSize), none)
	cfg.AddProtocolLimit(circuit.ProtoIDv2Hop, streams(r+l.Conns, l.Conns, int64(r+2*l.Conns)*relayMessageSize), none)
	cfg.AddProtocolPeerLimit(circuit.ProtoIDv2Hop, streams(rp+1, l.StreamsPerPeer, peerMem), none)
	cfg.AddProtocolLimit(circuit.ProtoIDv2Stop, streams(l.Conns, r, int64(r+l.Conns)*relayMessageSize), none)
	cfg.AddProtocolPeerLimit(circuit.ProtoIDv2Stop, streams(l.StreamsPerPeer, rp, peerMem), none)

	// Scale with no memory and no file descriptors adds nothing to the base
	// limits: the result is exactly the numbers above.
	return cfg.Scale(0, 0)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// connLimiterOptions returns the resource manager options for connections
// and connection rate per IP (see ConnsPerIP and ConnRatePerIP).
func (l Limits) connLimiterOptions() []rcmgr.Option {
	loopback4 := netip.MustParsePrefix("127.0.0.0/8")
	loopback6 := netip.MustParsePrefix("::1/128")
	perIP := rate.Limit{RPS: l.ConnRatePerIP, Burst: l.ConnsPerIP}
	wide := rate.Limit{RPS: 5 * l.ConnRatePerIP, Burst: 5 * l.ConnsPerIP}
	return []rcmgr.Option{
		rcmgr.WithNetworkPrefixLimit(
			[]rcmgr.NetworkPrefixLimit{{Network: loopback4, ConnCount: math.MaxInt}},
			[]rcmgr.NetworkPrefixLimit{{Network: loopback6, ConnCount: math.MaxInt}}),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: l.ConnsPerIP}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: l.ConnsPerIP}, {PrefixLength: 48, ConnCount: 8 * l.ConnsPerIP}}),
		rcmgr.WithConnRateLimiters(&rate.Limiter{
			// A zero Limit means no limit: loopback is never rate limited.
			NetworkPrefixLimits: []rate.PrefixLimit{{Prefix: loopback4}, {Prefix: loopback6}},
			SubnetRateLimiter: rate.SubnetLimiter{
				IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: perIP}},
				IPv6SubnetLimits: []rate.SubnetLimit{{PrefixLength: 56, Limit: perIP}, {PrefixLength: 48, Limit: wide}},
				GracePeriod:      time.Minute,
			},
		}),
	}
}

// newResourceManager builds the resource manager from l (defaults set);
// metrics says whether its Prometheus statistics are kept.
func newResourceManager(l Limits, metrics bool) (network.ResourceManager, error) {
	opts := l.connLimiterOptions()
	if !metrics {
		opts = append(opts, rcmgr.WithMetricsDisabled())
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(l.Derive()), opts...)
	if err != nil {
		return nil, fmt.Errorf("p2phost: resource manager: %w", err)
	}
	return rm, nil
}
