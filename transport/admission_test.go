package transport

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// knownSet is a Handler.Known for tests.
type knownSet struct {
	mu sync.Mutex
	m  map[peer.ID]bool
}

func (k *knownSet) add(p peer.ID) { k.mu.Lock(); k.m[p] = true; k.mu.Unlock() }
func (k *knownSet) has(p peer.ID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[p]
}

// With every slot taken by identities nobody knows, a known peer gets in
// (the idlest unknown channel makes room), an unknown newcomer does not
// push out an unknown peer that is talking, and a pinned peer is never
// evicted.
func TestAdmissionAtTheLimit(t *testing.T) {
	known := &knownSet{m: map[peer.ID]bool{}}
	opts := fastOptions(newSeed())
	opts.MaxConnections = 2
	rec := newRecorder()
	h := rec.handler()
	h.Known = known.has
	tr, err := Start(context.Background(), opts, h)
	if err != nil {
		t.Fatal(err)
	}
	hub := &node{Transport: tr, rec: rec, seed: opts.KeySeed, inc: opts.IncarnationID, opts: opts}
	t.Cleanup(func() { tr.Stop(context.Background()) })
	addr := hub.addr(t)

	s1, s2 := startNode(t, nil), startNode(t, nil)
	sendAll(t, s1, hub.PeerID(), []string{"1"}, addr)
	sendAll(t, s2, hub.PeerID(), []string{"2"}, addr)
	waitMessages(t, hub, s1.PeerID(), []string{"1"})
	waitMessages(t, hub, s2.PeerID(), []string{"2"})

	// An unknown newcomer while both unknown channels are fresh: refused.
	u := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := u.Send(ctx, hub.PeerID(), []byte("u"), addr); err == nil {
		t.Fatal("an unknown newcomer pushed out an unknown peer that had just talked")
	}

	// A known newcomer: the idlest unknown channel makes room.
	k := startNode(t, nil)
	known.add(k.PeerID())
	sendAll(t, k, hub.PeerID(), []string{"k"}, addr)
	waitMessages(t, hub, k.PeerID(), []string{"k"})
	if n := testutil.ToFloat64(hub.metrics.evictions); n != 1 {
		t.Errorf("%v evictions, want 1", n)
	}
	if hub.state(s1.PeerID()) == StateConnected && hub.state(s2.PeerID()) == StateConnected {
		t.Fatal("both unknown peers still hold a slot")
	}

	// A pinned peer is never evicted, even for a known newcomer.
	hub.SetPinned(k.PeerID(), true)
	survivor := s1
	if hub.state(s1.PeerID()) != StateConnected {
		survivor = s2
	}
	hub.SetPinned(survivor.PeerID(), true)
	k2 := startNode(t, nil)
	known.add(k2.PeerID())
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if err := k2.Send(ctx2, hub.PeerID(), []byte("k2"), addr); err == nil {
		t.Fatal("a pinned peer was evicted")
	}
	if hub.state(k.PeerID()) != StateConnected || hub.state(survivor.PeerID()) != StateConnected {
		t.Fatal("a pinned channel lost its slot")
	}
	if n := testutil.ToFloat64(hub.metrics.admissionRefused); n < 2 {
		t.Errorf("%v admission refusals counted, want at least 2", n)
	}
}

// New inbound connections are rate limited per source address before any
// security handshake is spent on them.
func TestPerAddressRate(t *testing.T) {
	l := newAddrLimiter(5, 1000, true)
	a := ma.StringCast("/ip4/127.0.0.1/tcp/4001")
	allowed := 0
	for range 100 {
		if l.allow(a) {
			allowed++
		}
	}
	if allowed < 10 || allowed > 12 { // burst 2×5, a token or so refilled
		t.Errorf("%d of 100 immediate connections allowed at 5/s burst 10", allowed)
	}
	if !l.allow(ma.StringCast("/ip4/127.0.0.2/tcp/4001")) {
		t.Error("another address was limited by the first one's rate")
	}
	exempt := newAddrLimiter(1, 1, false)
	for range 10 {
		if !exempt.allow(a) {
			t.Fatal("a loopback source was limited although loopback is exempt")
		}
	}
	sub := newAddrLimiter(1000, 3, true)
	n := 0
	for i := range 20 {
		if sub.allow(ma.StringCast("/ip4/10.1.2." + string(rune('1'+i%9)) + "/tcp/1")) {
			n++
		}
	}
	if n > 7 {
		t.Errorf("%d connections from one /24 at 3/s burst 6", n)
	}
	if !sub.allow(ma.StringCast("/ip4/10.1.3.1/tcp/1")) {
		t.Error("another /24 was limited")
	}
	relayed := ma.StringCast("/ip4/192.0.2.1/tcp/1/p2p/12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc/p2p-circuit")
	for range 50 {
		if !l.allow(relayed) {
			t.Fatal("a relayed connection was limited by the relay's address")
		}
	}
}

// Through real hosts: with the loopback exemption off, a burst of inbound
// streams from one address is refused past its rate and counted.
func TestHandshakeRateRefused(t *testing.T) {
	hub := startNode(t, func(o *Options) {
		o.MaxNewConnsPerIP = 1
		o.MaxNewConnsPerSubnet = 1000
		o.limitLoopback = true
	})
	addr := hub.addr(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := startNode(t, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = c.Send(ctx, hub.PeerID(), []byte("x"), addr)
		}()
	}
	wg.Wait()
	if n := testutil.ToFloat64(hub.metrics.rateRefused); n == 0 {
		t.Fatal("no refusal although 8 peers connected at once from one address limited to 1/s")
	}
}
