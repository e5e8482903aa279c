package p2phost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// The derived limits are our numbers, not AutoScale's (System.Conns 504,
// 252 ping streams on this machine kind).
func TestDeriveFromOurNumbers(t *testing.T) {
	l := Limits{Conns: 6000, RelayCircuits: 1000, RelayCircuitsPerPeer: 64, StreamsPerPeer: 200}.withDefaults()
	if err := l.validate(); err != nil {
		t.Fatal(err)
	}
	c := l.Derive().ToPartialLimitConfig()
	check := func(what string, got rcmgr.LimitVal, want int) {
		t.Helper()
		if int(got) != want {
			t.Errorf("%s = %d, want %d", what, got, want)
		}
	}
	check("system conns", c.System.Conns, 6000)
	check("system conns inbound", c.System.ConnsInbound, 6000)
	check("system streams", c.System.Streams, 4*6000+2*1000)
	check("transient conns", c.Transient.Conns, 1500)
	check("peer conns", c.PeerDefault.Conns, 8)
	check("peer streams", c.PeerDefault.StreamsInbound, 200)
	check("conn conns", c.Conn.Conns, 1)
	check("ping service inbound", c.Service[ping.ServiceName].StreamsInbound, 6000)
	check("ping protocol inbound", c.Protocol[ping.ID].StreamsInbound, 6000)
	check("identify service inbound", c.Service[identify.ServiceName].StreamsInbound, 6000)
	check("identify push protocol", c.Protocol[identify.IDPush].StreamsOutbound, 6000)
	check("relay service inbound", c.Service[relayv2.ServiceName].StreamsInbound, 1000+6000)
	check("relay service outbound", c.Service[relayv2.ServiceName].StreamsOutbound, 1000)
	check("relay service per peer inbound", c.ServicePeer[relayv2.ServiceName].StreamsInbound, 65)
	check("relay service per peer outbound", c.ServicePeer[relayv2.ServiceName].StreamsOutbound, 64)
	check("hop inbound", c.Protocol[circuit.ProtoIDv2Hop].StreamsInbound, 7000)
	check("stop outbound", c.Protocol[circuit.ProtoIDv2Stop].StreamsOutbound, 1000)
	if got, want := int64(c.System.Memory), int64(StreamWindow*(4*6000+2*1000)); got != want {
		t.Errorf("system memory %d, want %d", got, want)
	}
	// One connection can carry all of a peer's streams (yamux reserves a
	// window per stream from its connection).
	if int64(c.Conn.Memory) < int64(StreamWindow*200) {
		t.Errorf("conn memory %d below %d streams' windows", c.Conn.Memory, 200)
	}
	// Without a relay service, its scope admits nothing.
	n := Limits{Conns: 100}.withDefaults().Derive().ToPartialLimitConfig()
	if v := n.Service[relayv2.ServiceName].StreamsInbound; v.Build(1) != 0 {
		t.Errorf("relay service inbound without circuits: %d", v)
	}
}

// The limits are really applied, and Limit tells our own limit from the
// peer's.
func TestLimitLocalAndRemote(t *testing.T) {
	const proto = "/p2phost-test/1"
	// a: at most 2 connections and 3 streams per peer.
	a := newHost(t, Options{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Transports: []Transport{TCP},
		Limits: Limits{Conns: 2, ConnsPerPeer: 1, StreamsPerPeer: 3}, ConnManager: ConnManager{Low: 1, High: 2}})
	hold := make(chan struct{})
	defer close(hold)
	a.SetStreamHandler(proto, func(s network.Stream) { s.Write([]byte("k")); <-hold; s.Reset() })
	var others []peer.AddrInfo
	for range 3 {
		b := newHost(t, Options{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Transports: []Transport{TCP}})
		b.SetStreamHandler(proto, func(s network.Stream) { <-hold; s.Reset() })
		others = append(others, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, o := range others[:2] {
		if err := a.Connect(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// A third outbound connection is over a's own limit.
	err := a.Connect(ctx, others[2])
	t.Logf("third connection: %v", err)
	if got := Limit(err); got != LocalLimit {
		t.Fatalf("third connection: %v: Limit %v, want local", err, got)
	}

	// A peer opening a second stream to a gets a's refusal: remote to it.
	c := newHost(t, Options{Transports: []Transport{TCP}})
	a.Network().ClosePeer(others[1].ID)
	if err := c.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// Streams that a holds open: the fourth is over a's limit of 3.
	var refused error
	for i := 0; i < 10 && refused == nil; i++ {
		s, err := c.NewStream(ctx, a.ID(), proto)
		if err != nil {
			refused = err
			break
		}
		defer s.Reset()
		if _, err := s.Read(make([]byte, 1)); err != nil {
			refused = err
		}
	}
	t.Logf("refused: %v", refused)
	if got := Limit(refused); got != RemoteLimit {
		t.Fatalf("fourth stream: %v: Limit %v, want remote", refused, got)
	}
}

func TestLimitClassification(t *testing.T) {
	for err, want := range map[error]LimitSide{
		nil:                              NoLimit,
		errors.New("connection refused"): NoLimit,
		fmt.Errorf("transient: cannot reserve stream: %w", network.ErrResourceLimitExceeded): LocalLimit,
		errors.New("connections per ip limit exceeded for /ip4/1.2.3.4/tcp/1"):               LocalLimit,
		&network.StreamError{ErrorCode: network.StreamResourceLimitExceeded, Remote: true}:   RemoteLimit,
		&network.StreamError{ErrorCode: network.StreamResourceLimitExceeded}:                 LocalLimit,
		&network.StreamError{ErrorCode: network.StreamProtocolViolation, Remote: true}:       NoLimit,
		&network.ConnError{ErrorCode: network.ConnRateLimited, Remote: true}:                 RemoteLimit,
		errors.New("error opening relay circuit: RESOURCE_LIMIT_EXCEEDED (201)"):             RemoteLimit,
	} {
		if got := Limit(err); got != want {
			t.Errorf("%v: %v, want %v", err, got, want)
		}
	}
}
