//go:build scale

package node

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

var scalePeers = flag.Int("scale.peers", 2000, "lightweight peers in TestHubScale")

// lightPeer is a plain go-libp2p host speaking the wire protocol by hand:
// it opens a channel to the hub, sends one message, acknowledges what the
// hub sends and records the hub's acknowledgement.
type lightPeer struct {
	h     host.Host
	s     network.Stream
	acked atomic.Bool // the hub acknowledged our message
	got   atomic.Bool // we received (and acknowledged) the hub's message
	done  chan struct{}
}

func startLightPeer(ctx context.Context, hub peer.AddrInfo, i int) (*lightPeer, error) {
	h, err := libp2p.New(libp2p.Identity(identity.Seed{0x5c, byte(i), byte(i >> 8)}.PrivateKey()), libp2p.NoListenAddrs,
		libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport), libp2p.DefaultSecurity, libp2p.DefaultMuxers,
		libp2p.DisableMetrics(), libp2p.DisableRelay(), libp2p.ResourceManager(&network.NullResourceManager{}))
	if err != nil {
		return nil, err
	}
	lp := &lightPeer{h: h, done: make(chan struct{})}
	if err := h.Connect(ctx, hub); err != nil {
		h.Close()
		return nil, err
	}
	s, err := h.NewStream(ctx, hub.ID, wire.ProtocolID)
	if err != nil {
		h.Close()
		return nil, err
	}
	lp.s = s
	r := wire.NewReader(s, 0)
	if err := wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{IncarnationID: identity.NewIncarnationID()})); err != nil {
		h.Close()
		return nil, err
	}
	if _, err := r.ReadFrame(); err != nil { // the handshake ack
		h.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if err := wire.WriteFrame(s, []byte(`{"seq":1,"method":"m","params":[1]}`)); err != nil {
		h.Close()
		return nil, err
	}
	go func() {
		defer close(lp.done)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				return
			}
			m, err := wire.DecodeMessage(f)
			if err != nil {
				continue
			}
			if m.Envelope.Ack >= 1 {
				lp.acked.Store(true)
			}
			if !m.IsAck && m.Envelope.Seq > 0 {
				if wire.WriteFrame(s, fmt.Appendf(nil, `{"ack":%d}`, m.Envelope.Seq)) != nil {
					return
				}
				lp.got.Store(true)
			}
		}
	}()
	return lp, nil
}

func (lp *lightPeer) close() {
	lp.h.Close()
	<-lp.done
}

// TestHubScale is issue 12's hub at scale: 2,000 lightweight peers
// (-scale.peers) open channels to one node with default limits, each sends a
// message and receives one; every message is acknowledged, and after three
// liveness rounds at the default interval every channel is still open, no
// probe failed and none was refused by a local limit. Not in the default
// run:
//
//	go test -tags scale -run TestHubScale -v -timeout 30m ./node/
func TestHubScale(t *testing.T) {
	const liveness = 10 * time.Second // the default
	reg := prometheus.NewRegistry()
	var delivered atomic.Int64
	acked := make(chan struct{}, *scalePeers)
	n, err := Start(context.Background(), Options{
		Dir:       t.TempDir(),
		Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, LivenessInterval: liveness, Metrics: reg},
	}, Handler{
		OnMessage: func(Message) error { delivered.Add(1); return nil },
		OnEvent: func(e Event) {
			if _, ok := e.(Acknowledged); ok {
				acked <- struct{}{}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		n.Stop(ctx)
	})
	hub, err := peer.AddrInfoFromString(n.ListenAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	peers := make([]*lightPeer, *scalePeers)
	var wg sync.WaitGroup
	var next, retries atomic.Int64
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(peers) {
					return
				}
				// A peer that fails to get in retries, as a real one would
				// (retries are counted and logged).
				var lp *lightPeer
				var err error
				for attempt := range 3 {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					lp, err = startLightPeer(ctx, *hub, i)
					cancel()
					if err == nil {
						break
					}
					retries.Add(1)
					t.Logf("peer %d, attempt %d: %v", i, attempt+1, err)
				}
				if err != nil {
					errs <- fmt.Errorf("peer %d: %w", i, err)
					return
				}
				peers[i] = lp
				if (i+1)%250 == 0 {
					t.Logf("%d peers started (%v)", i+1, time.Since(began).Round(time.Millisecond))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, lp := range peers {
			if lp != nil {
				lp.close()
			}
		}
	})
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d channels open in %v (%d retried attempts)", len(peers), time.Since(began).Round(time.Millisecond), retries.Load())
	waitFor(t, time.Minute, "every peer's message delivered", func() bool { return delivered.Load() == int64(len(peers)) })

	batch := make([]Outgoing, len(peers))
	for i, lp := range peers {
		batch[i] = Outgoing{To: lp.h.ID(), Method: "m", Params: param(i)}
	}
	for _, r := range n.SendBatch(context.Background(), batch) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for range peers {
		select {
		case <-acked:
		case <-time.After(time.Minute):
			t.Fatal("not every message acknowledged within a minute")
		}
	}
	waitFor(t, time.Minute, "every peer acknowledged by the hub", func() bool {
		for _, lp := range peers {
			if !lp.acked.Load() || !lp.got.Load() {
				return false
			}
		}
		return true
	})
	t.Logf("every message acknowledged both ways after %v", time.Since(began).Round(time.Millisecond))

	// Three liveness rounds.
	settle := time.Now()
	for time.Since(settle) < 3*liveness+liveness/2 {
		time.Sleep(liveness / 2) // the rounds are the point: nothing to wait for
		connected := 0
		for _, p := range n.Transport().Peers() {
			if p.State == transport.StateConnected {
				connected++
			}
		}
		t.Logf("after %v: %d connected", time.Since(settle).Round(time.Second), connected)
	}
	connected := 0
	for _, p := range n.Transport().Peers() {
		if p.State == transport.StateConnected {
			connected++
		}
	}
	failed, local := counter(t, reg, "ocapnet_transport_liveness_failures_total"), counter(t, reg, "ocapnet_transport_liveness_local_refusals_total")
	t.Logf("after three liveness rounds: %d of %d connected, %v probe failures, %v local refusals, %v deferred",
		connected, len(peers), failed, local, counter(t, reg, "ocapnet_transport_liveness_deferred_total"))
	if connected != len(peers) || failed != 0 || local != 0 {
		t.Fatalf("%d of %d connected, %v probe failures, %v local refusals", connected, len(peers), failed, local)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := 0.0
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
