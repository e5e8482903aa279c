package p2phost

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-yamux/v5"
)

// A connection's read clock is reset when bytes arrive from the peer, and
// the yamux session stays reachable through As beside it.
func TestReadClockFollowsReceivedBytes(t *testing.T) {
	a := newHost(t, Options{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Transports: []Transport{TCP}})
	b := newHost(t, Options{Transports: []Transport{TCP}})
	const proto = protocol.ID("/ocapnet-test/echo")
	a.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	conns := b.Network().ConnsToPeer(a.ID())
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	var rc *ReadClock
	if !conns[0].As(&rc) {
		t.Fatal("no read clock on a yamux connection")
	}
	var sess *yamux.Session
	if !conns[0].As(&sess) {
		t.Fatal("the yamux session is no longer reachable through As")
	}

	before, t0 := rc.Since(), time.Now()

	// The peer answers: the clock is reset.
	s, err := b.NewStream(ctx, a.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	// Without a reset the clock would have aged by at least the time the
	// exchange took.
	elapsed := time.Since(t0)
	if after := rc.Since(); after-before >= elapsed {
		t.Errorf("read clock aged %v during an exchange of %v: it did not see the answer", after-before, elapsed)
	}
}

// The RTT measurement interval is ours: defaulted, and negative refused.
func TestYamuxRTTIntervalOption(t *testing.T) {
	o, err := Options{Identity: key(t), Limits: Limits{Conns: 8}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.YamuxRTTInterval != DefaultYamuxRTTInterval {
		t.Errorf("YamuxRTTInterval defaulted to %v, want %v", o.YamuxRTTInterval, DefaultYamuxRTTInterval)
	}
	if _, err := (Options{Identity: key(t), Limits: Limits{Conns: 8}, YamuxRTTInterval: -time.Second}).withDefaults(); err == nil {
		t.Error("a negative YamuxRTTInterval was accepted")
	}
	if got := newYamuxMuxer(time.Hour).inner.Config().MeasureRTTInterval; got != time.Hour {
		t.Errorf("muxer measures RTT every %v, want 1h", got)
	}
}
