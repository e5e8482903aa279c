package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ocapnet/ocapnet/internal/testnet"
	"github.com/ocapnet/ocapnet/wire"
)

// announceOnly makes a host announce only the given addresses (so that
// peers can reach it only through a proxy or a relay).
func announceOnly(addrs ...ma.Multiaddr) libp2p.Option {
	return libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return addrs })
}

// proxyTarget turns /ip4/H/tcp/P/... into H:P.
func proxyTarget(t *testing.T, addr string) string {
	t.Helper()
	a := ma.StringCast(addr)
	host, err := a.ValueForProtocol(ma.P_IP4)
	if err != nil {
		t.Fatal(err)
	}
	port, err := a.ValueForProtocol(ma.P_TCP)
	if err != nil {
		t.Fatal(err)
	}
	return host + ":" + port
}

// A silent partition (packets vanish, no FIN or RST) is detected by the
// liveness check, and the link recovers after the partition heals.
func TestSilentPartition(t *testing.T) {
	// B is reachable only through the proxy.
	bOpts := fastOptions(newSeed())
	bOpts.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))}
	bAddr := ma.StringCast(bOpts.ListenAddrs[0])
	proxy := testnet.NewProxy(t, proxyTarget(t, bAddr.String()))
	bOpts.hostOptions = []libp2p.Option{announceOnly(proxy.Multiaddr())}
	b := startWith(t, bOpts)

	a := startNode(t, func(o *Options) {
		o.LivenessInterval = 200 * time.Millisecond
		o.LivenessTimeout = 300 * time.Millisecond
		o.DialTimeout = time.Second
	})
	hint := proxy.Multiaddr().String() + "/p2p/" + b.PeerID().String()
	if err := a.RegisterHints(b.PeerID(), hint); err != nil {
		t.Fatal(err)
	}
	a.SetPinned(b.PeerID(), true)
	waitFor(t, 5*time.Second, "connected through the proxy", func() bool { return a.state(b.PeerID()) == StateConnected })

	proxy.Blackhole()
	start := time.Now()
	waitFor(t, 5*time.Second, "partition detected", func() bool { return a.state(b.PeerID()) != StateConnected })
	detected := time.Since(start)
	// The liveness check runs every 200ms and times out after 300ms.
	if detected > 2*time.Second {
		t.Errorf("partition detected after %v, want within about LivenessInterval+LivenessTimeout", detected)
	}
	// Sends during the partition wait for the link to come back.
	done := sendAllLater(a, b.PeerID(), []string{"during-1", "during-2"})
	proxy.Heal()
	waitSent(t, done)
	waitMessages(t, b, a.PeerID(), []string{"during-1", "during-2"})
	if a.state(b.PeerID()) != StateConnected {
		t.Errorf("after heal A sees %v", a.state(b.PeerID()))
	}
}

// jumpClock is a wall clock that jumps forward without time passing.
type jumpClock struct{ offset atomic.Int64 }

func (c *jumpClock) now() time.Time       { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *jumpClock) jump(d time.Duration) { c.offset.Add(int64(d)) }

// A simulated wake from sleep cuts a long backoff wait short: the peer is
// dialled at once.
func TestWakeCutsBackoffShort(t *testing.T) {
	clock := &jumpClock{}
	a := startNode(t, func(o *Options) {
		o.ReconnectBaseDelay = time.Hour
		o.ReconnectMaxDelay = time.Hour
		o.backoffRand = func() float64 { return 0.99 } // a wait of ~59 minutes
		o.WakeInterval = 50 * time.Millisecond
		o.WakeThreshold = 200 * time.Millisecond
		o.Now = clock.now
	})
	bOpts := fastOptions(newSeed())
	bOpts.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))}
	hint := bOpts.ListenAddrs[0] + "/p2p/" + bOpts.KeySeed.PeerID().String()
	done := sendAllLater(a, bOpts.KeySeed.PeerID(), []string{"m"}, hint)
	// The first attempt fails at once (nothing listens); the second waits.
	waitFor(t, 5*time.Second, "a long backoff wait", func() bool {
		for _, p := range a.Peers() {
			if p.Attempt == 2 && time.Until(p.NextRetry) > 30*time.Minute {
				return true
			}
		}
		return false
	})
	b := startWith(t, bOpts)
	clock.jump(2 * time.Hour)
	waitSent(t, done)
	waitMessages(t, b, a.PeerID(), []string{"m"})
	if len(a.rec.eventsOf(func(e Event) bool { _, ok := e.(WakeDetected); return ok })) == 0 {
		t.Error("no WakeDetected event")
	}
}

// whateverStreams counts open streams of our protocol between two hosts.
func whateverStreams(n *node, p peer.ID) int {
	count := 0
	for _, c := range n.Host().Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if s.Protocol() == protocol.ID(wire.ProtocolID) {
				count++
			}
		}
	}
	return count
}

// Both sides dial at the same time: the deterministic rule leaves exactly
// one channel on both sides, and no frame is lost or reordered.
func TestSimultaneousDial(t *testing.T) {
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			a := startNode(t, nil)
			b := startNode(t, nil)
			aHint, bHint := a.addr(t), b.addr(t)
			toB, toA := numbered("ab", 20), numbered("ba", 20)
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Add(2)
			go func() { defer wg.Done(); <-start; sendAll(t, a, b.PeerID(), toB, bHint) }()
			go func() { defer wg.Done(); <-start; sendAll(t, b, a.PeerID(), toA, aHint) }()
			close(start)
			wg.Wait()
			waitMessages(t, b, a.PeerID(), toB)
			waitMessages(t, a, b.PeerID(), toA)
			waitFor(t, 10*time.Second, "one channel on both sides", func() bool {
				return whateverStreams(a, b.PeerID()) == 1 && whateverStreams(b, a.PeerID()) == 1
			})
			if a.state(b.PeerID()) != StateConnected || b.state(a.PeerID()) != StateConnected {
				t.Fatalf("states %v / %v", a.state(b.PeerID()), b.state(a.PeerID()))
			}
			// The surviving channel carries traffic both ways.
			sendAll(t, a, b.PeerID(), []string{"after"})
			waitMessages(t, b, a.PeerID(), append(toB, "after"))
		})
	}
}

// rawHost is a bare go-libp2p host for attacking a transport.
func rawHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// streamEnds reports whether the transport reset or closed s within d.
func streamEnds(s network.Stream, d time.Duration) error {
	_ = s.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1024)
	for {
		_, err := s.Read(buf)
		if err == nil {
			continue
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("stream still open after %v", d)
		}
		return nil
	}
}

// Raw-stream attacks (oversize length, garbage handshake, a handshake that
// never comes, an oversize frame after a valid handshake) get the stream
// closed and are counted, while another peer keeps being served.
func TestRawStreamAttacks(t *testing.T) {
	a := startNode(t, func(o *Options) { o.HandshakeTimeout = 500 * time.Millisecond; o.MaxMessageSize = 1 << 16 })
	b := startNode(t, nil)
	aInfo := peer.AddrInfo{ID: a.PeerID(), Addrs: a.Host().Addrs()}
	ctx := context.Background()

	// Keep B talking to A during the attacks.
	stopTraffic := make(chan struct{})
	var sent []string
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		for i := 0; ; i++ {
			select {
			case <-stopTraffic:
				return
			default:
			}
			m := fmt.Sprintf(`{"n":%d}`, i)
			if err := b.Send(ctx, a.PeerID(), []byte(m), a.addr(t)); err != nil {
				return
			}
			sent = append(sent, m)
			time.Sleep(2 * time.Millisecond) // pacing the background traffic
		}
	}()

	attacks := map[string][]byte{
		"oversize length prefix": {0xff, 0xff, 0xff, 0x7f},
		"over-long prefix":       {0x80, 0x80, 0x80, 0x80, 0x01},
		"garbage handshake":      wire.AppendFrame(nil, []byte(`{"hello":"world"}`)),
		"not JSON":               wire.AppendFrame(nil, []byte{0xde, 0xad, 0xbe, 0xef}),
		"handshakeAck first":     wire.AppendFrame(nil, wire.EncodeHandshake(wire.Handshake{Ack: true, IncarnationID: "x"})),
		"slow loris":             nil,
	}
	for name, payload := range attacks {
		t.Run(name, func(t *testing.T) {
			x := rawHost(t)
			if err := x.Connect(ctx, aInfo); err != nil {
				t.Fatal(err)
			}
			s, err := x.NewStream(ctx, a.PeerID(), wire.ProtocolID)
			if err != nil {
				t.Fatal(err)
			}
			if payload != nil {
				if _, err := s.Write(payload); err != nil {
					t.Fatal(err)
				}
			}
			if err := streamEnds(s, 3*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("oversize frame after handshake", func(t *testing.T) {
		x := rawHost(t)
		if err := x.Connect(ctx, aInfo); err != nil {
			t.Fatal(err)
		}
		s, err := x.NewStream(ctx, a.PeerID(), wire.ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		_ = wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{IncarnationID: "attacker"}))
		ack, err := wire.NewReader(s, 0).ReadFrame()
		if err != nil || !strings.Contains(string(ack), "handshakeAck") {
			t.Fatalf("no handshakeAck: %q %v", ack, err)
		}
		_, _ = s.Write([]byte{0x80, 0x80, 0x08}) // announces 128 KiB > 64 KiB limit
		if err := streamEnds(s, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	close(stopTraffic)
	<-trafficDone
	waitMessages(t, a, b.PeerID(), sent)
	if len(sent) == 0 {
		t.Fatal("no traffic from B during the attacks")
	}
}

// Stop in every phase returns promptly, leaves no goroutine (TestMain's
// goleak) and returns the queued messages.
func TestStopDuringPhases(t *testing.T) {
	phases := map[string]func(t *testing.T, a *node) <-chan error{
		"dialing a silent address": func(t *testing.T, a *node) <-chan error {
			// A proxy that blackholes: the TCP connect works, security never completes.
			b := startNode(t, nil)
			proxy := testnet.NewProxy(t, proxyTarget(t, b.addr(t)))
			proxy.Blackhole()
			done := sendAllLater(a, b.PeerID(), []string{"q"}, proxy.Multiaddr().String()+"/p2p/"+b.PeerID().String())
			waitFor(t, 5*time.Second, "dialing", func() bool { return a.state(b.PeerID()) == StateConnecting })
			return done
		},
		"handshaking with a silent peer": func(t *testing.T, a *node) <-chan error {
			x, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { x.Close() })
			x.SetStreamHandler(wire.ProtocolID, func(s network.Stream) { io.Copy(io.Discard, s) })
			hint := x.Addrs()[0].String() + "/p2p/" + x.ID().String()
			done := sendAllLater(a, x.ID(), []string{"q"}, hint)
			waitFor(t, 5*time.Second, "handshake in progress", func() bool {
				return whateverStreams(a, x.ID()) == 1
			})
			return done
		},
		"in a backoff wait": func(t *testing.T, a *node) <-chan error {
			target := newSeed().PeerID()
			done := sendAllLater(a, target, []string{"q"}, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), target))
			waitFor(t, 5*time.Second, "waiting", func() bool {
				for _, p := range a.Peers() {
					if p.Attempt >= 2 {
						return true
					}
				}
				return false
			})
			return done
		},
	}
	for name, setup := range phases {
		t.Run(name, func(t *testing.T) {
			a := startNode(t, func(o *Options) {
				o.HandshakeTimeout = time.Minute
				o.DialTimeout = time.Minute
				o.ReconnectBaseDelay = time.Minute
				o.ReconnectMaxDelay = time.Minute
				o.backoffRand = func() float64 { return 0.9 }
			})
			done := setup(t, a)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			if err := a.Stop(ctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Stop took %v", d)
			}
			select {
			case err := <-done:
				if !errors.Is(err, ErrStopped) {
					t.Fatalf("the waiting Send returned %v, want ErrStopped", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the waiting Send did not return after Stop")
			}
		})
	}
}

// Relayed peers reconnect and exchange messages again after the relay
// restarts.
func TestRelayRestart(t *testing.T) {
	r := testnet.NewRelay(t)
	relayed := func(o *Options) {
		o.Relays = []string{r.Addr()}
		o.RelayRedialBase = 20 * time.Millisecond
		o.RelayRedialMax = 100 * time.Millisecond
		o.hostOptions = []libp2p.Option{announceOnly()} // reachable only through the relay
	}
	a := startNode(t, relayed)
	b := startNode(t, relayed)
	waitFor(t, 5*time.Second, "reservations", func() bool {
		return a.Relays()[0].Reserved && b.Relays()[0].Reserved
	})
	if !slicesContains(b.ListenAddrs(), "/p2p-circuit/p2p/"+b.PeerID().String()) {
		t.Errorf("B's listen addrs lack its circuit address: %v", b.ListenAddrs())
	}
	a.SetPinned(b.PeerID(), true)
	sendAll(t, a, b.PeerID(), []string{"via relay"})
	waitMessages(t, b, a.PeerID(), []string{"via relay"})
	if ra := peerRemoteAddr(a, b.PeerID()); !strings.Contains(ra, "p2p-circuit") {
		t.Fatalf("channel is not relayed: %s", ra)
	}

	r.Stop()
	waitFor(t, 5*time.Second, "A notices", func() bool { return a.state(b.PeerID()) != StateConnected })
	done := sendAllLater(a, b.PeerID(), []string{"sent during relay outage"})
	r.Start()
	waitFor(t, 10*time.Second, "reservations again", func() bool {
		return a.Relays()[0].Reserved && b.Relays()[0].Reserved
	})
	waitSent(t, done)
	waitMessages(t, b, a.PeerID(), []string{"via relay", "sent during relay outage"})
	sendAll(t, b, a.PeerID(), []string{"back"})
	waitMessages(t, a, b.PeerID(), []string{"back"})
}

func slicesContains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func peerRemoteAddr(n *node, p peer.ID) string {
	for _, i := range n.Peers() {
		if i.ID == p {
			return i.RemoteAddr
		}
	}
	return ""
}

// A peer that floods is paced by pausing its reads (nothing dropped); other
// peers are unaffected.
func TestInboundRatePausesNotDrops(t *testing.T) {
	b := startNode(t, func(o *Options) { o.InboundRate = 100; o.InboundBurst = 10 })
	flooder := startNode(t, nil)
	other := startNode(t, nil)
	flood := numbered("f", 60)
	start := time.Now()
	sendAll(t, flooder, b.PeerID(), flood, b.addr(t))
	sendAll(t, other, b.PeerID(), []string{"quick"}, b.addr(t))
	waitMessages(t, b, other.PeerID(), []string{"quick"})
	waitMessages(t, b, flooder.PeerID(), flood)
	// 60 frames at 100/s after a burst of 10 take at least 0.5 s.
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("60 frames passed a 100/s limit in %v: reads were not paced", d)
	}
}

func TestConnectionLimit(t *testing.T) {
	b := startNode(t, func(o *Options) { o.MaxConnections = 1 })
	first := startNode(t, nil)
	second := startNode(t, nil)
	sendAll(t, first, b.PeerID(), []string{"1"}, b.addr(t))
	waitMessages(t, b, first.PeerID(), []string{"1"})
	done := sendAllLater(second, b.PeerID(), []string{"2"}, b.addr(t))
	waitFor(t, 5*time.Second, "second refused", func() bool {
		for _, p := range second.Peers() {
			if p.ID == b.PeerID() && p.Attempt >= 2 && p.LastError != "" {
				return true
			}
		}
		return false
	})
	if len(b.rec.messages(second.PeerID())) != 0 {
		t.Fatal("a channel over the limit was accepted")
	}
	// When the first peer's channel goes, the second gets in.
	if err := first.Close(b.PeerID()); err != nil {
		t.Fatal(err)
	}
	waitSent(t, done)
	waitMessages(t, b, second.PeerID(), []string{"2"})
}
