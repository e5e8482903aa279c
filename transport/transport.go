// Package transport keeps one resilient, long-lived channel per peer over
// libp2p, wire-compatible with the JavaScript ocap-kernel (protocol
// "whatever", varint length-prefixed JSON frames, an incarnation handshake on
// every new stream).
//
// It is the Go counterpart of upstream's platform transport: it dials peers
// on demand, reconnects with exponential backoff and full jitter, detects
// silent partitions with libp2p ping, notices wake from sleep, reserves on
// relays and keeps the reservations, lets the application close a link on
// purpose and tells the peer, and stops cleanly. Messages are opaque bytes
// here; there is no queue: Send writes on an open channel (waiting for one to
// be dialled) or fails, and sequence numbers, acknowledgements and the
// durable queue belong to package node.
//
// The transport owns link state (channel, generation, attempt, failed,
// closed, closed-by-peer); the layer above owns delivery state and learns of
// link changes synchronously through Handler (see there).
//
// Files, by concern: transport.go (start, stop, accessors), options.go,
// handler.go, state.go, errors.go (the contract), peer.go (the peer table,
// hints, pins, admission), send.go (writes), dial.go (the connector and its
// backoff), channel.go (handshakes, registration, read loops, the delivery
// gate), control.go (intentional close, Reconnect), liveness.go (ping, wake,
// stale cleanup), relays.go (reservation keepers), host.go (the libp2p host
// and gater), classify.go (error classes), metrics.go.
//
// Concurrency. Transport.mu guards the peer table and every peer's link
// state. Per peer, three more locks order work: linkMu serialises the
// changes reported to Handler (registration, close, end of link), sendSem
// serialises writes, deliverMu serialises OnMessage. Lock order: deliverMu →
// linkMu → sendSem → mu; Handler callbacks run with linkMu or deliverMu held
// (as documented on Handler) but never with mu or sendSem held. Every
// goroutine the transport starts is counted in Transport.wg and has ended
// when Stop returns.
package transport

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ocapnet/ocapnet/internal/backoff"
	"github.com/ocapnet/ocapnet/internal/eventq"
	"github.com/ocapnet/ocapnet/internal/logsum"
	"github.com/ocapnet/ocapnet/internal/wake"
	"github.com/ocapnet/ocapnet/wire"
)

// Transport is a running transport. Create it with Start; stop it with Stop.
type Transport struct {
	opts       Options
	h          host.Host
	handler    Handler
	log        *slog.Logger
	sum        *logsum.Logger // per-peer and per-frame lines, summarised
	self       peer.ID
	metrics    *metrics
	events     *eventq.Queue[Event]
	policy     backoff.Policy
	relays     []*relayState // fixed at Start
	limits     *addrLimiter  // per-address rates of new connections and handshakes
	handshakes chan struct{} // one slot per inbound handshake in progress
	probes     chan struct{} // one slot per liveness probe in flight

	ctx    context.Context // cancelled by Stop: ends every wait, dial and loop
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the transport starts, but the event queue's
	evWG   sync.WaitGroup // the event queue's goroutine (ends after wg's, so every event is delivered)

	stopOnce sync.Once
	stopDone chan struct{} // closed when the work of the first Stop has ended
	stopErr  error         // set before stopDone is closed

	mu       sync.Mutex // guards the following fields and every peerState's link state
	stopped  bool
	peers    map[peer.ID]*peerState
	channels int    // peers with a registered channel
	gens     uint64 // channel generations handed out
}

// Start creates the libp2p host, starts listening, reserves on the relays
// and returns the running transport.
func Start(ctx context.Context, opts Options, h Handler) (*Transport, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var relayInfos []peer.AddrInfo
	var relayAddrs []ma.Multiaddr
	for _, r := range opts.Relays {
		a, err := ma.NewMultiaddr(r)
		if err != nil {
			return nil, fmt.Errorf("%w: relay %q: %v", ErrInvalidOptions, r, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: relay %q must end in /p2p/<peer ID>: %v", ErrInvalidOptions, r, err)
		}
		relayInfos = append(relayInfos, *ai)
		relayAddrs = append(relayAddrs, a)
	}
	limits := newAddrLimiter(opts.MaxNewConnsPerIP, opts.MaxNewConnsPerSubnet, opts.limitLoopback)
	hst, err := newHost(&opts, relayAddrs, limits)
	if err != nil {
		return nil, fmt.Errorf("transport: starting libp2p: %w", err)
	}
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &Transport{
		opts:       opts,
		h:          hst,
		handler:    h,
		log:        opts.Logger,
		sum:        logsum.New(opts.Logger, 0),
		self:       hst.ID(),
		metrics:    newMetrics(opts.Metrics),
		policy:     backoff.Policy{Base: opts.ReconnectBaseDelay, Max: opts.ReconnectMaxDelay, Rand: opts.backoffRand},
		ctx:        tctx,
		cancel:     cancel,
		stopDone:   make(chan struct{}),
		peers:      map[peer.ID]*peerState{},
		limits:     limits,
		handshakes: make(chan struct{}, opts.MaxPendingHandshakes),
		probes:     make(chan struct{}, maxProbesInFlight),
	}
	t.events = eventq.New(h.OnEvent, &t.evWG)
	t.metrics.peersFunc = t.stateCounts
	hst.SetStreamHandler(wire.ProtocolID, t.handleStream)
	hst.SetStreamHandler(wire.ControlProtocolID, t.handleControl)

	sub, err := hst.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		cancel()
		t.events.Close()
		hst.Close()
		t.evWG.Wait()
		t.sum.Stop()
		return nil, fmt.Errorf("transport: event bus: %w", err)
	}
	for _, ai := range relayInfos {
		t.relays = append(t.relays, &relayState{info: ai, poke: make(chan struct{}, 1)})
	}
	t.goTracked(func() { t.watchConnectedness(sub) })
	for _, r := range t.relays {
		t.goTracked(func() { t.keepRelay(r) })
	}
	if opts.WakeInterval > 0 {
		t.goTracked(func() {
			wake.Detector{Interval: opts.WakeInterval, Threshold: opts.WakeThreshold, Now: opts.Now}.Run(t.ctx, t.onWake)
		})
	}
	t.goTracked(t.cleanupLoop)
	t.log.Info("transport started", "peer", t.self, "addrs", t.ListenAddrs())
	return t, nil
}

// goTracked runs f in a goroutine owned by the transport (Stop waits for
// it). It must only be called before Stop or with mu held and !stopped.
func (t *Transport) goTracked(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
}

// enterLocked counts a goroutine that libp2p started for us (a stream
// handler) in wg, unless Stop began. Caller holds mu; the goroutine calls
// wg.Done when it ends.
func (t *Transport) enterLocked() bool {
	if t.stopped {
		return false
	}
	t.wg.Add(1)
	return true
}

// MaxMessageSize returns the largest frame payload the transport writes and
// reads, in bytes.
func (t *Transport) MaxMessageSize() int { return t.opts.MaxMessageSize }

// PeerID returns this node's peer ID.
func (t *Transport) PeerID() peer.ID { return t.self }

// ListenAddrs returns the addresses peers can dial, each ending in
// /p2p/<our peer ID>, including /p2p-circuit addresses on relays where a
// reservation is held. It returns nil after Stop.
func (t *Transport) ListenAddrs() []string {
	t.mu.Lock()
	stopped := t.stopped
	t.mu.Unlock()
	if stopped {
		return nil
	}
	suffix := "/p2p/" + t.self.String()
	var out []string
	for _, a := range t.h.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			continue
		}
		out = append(out, a.String()+suffix)
	}
	for _, r := range t.relays {
		if !r.snapshot().Reserved {
			continue
		}
		for _, a := range r.info.Addrs {
			out = append(out, a.String()+"/p2p/"+r.info.ID.String()+"/p2p-circuit"+suffix)
		}
	}
	return out
}

// Stop stops the transport: it cancels every wait, dial and loop, fails
// every waiting Send with ErrStopped, closes the channels gracefully, stops
// the libp2p host and waits for all its goroutines, the return of every
// Handler callback and the delivery of every event.
//
// Stop is unconditional and idempotent: the first call starts the stop,
// which runs to its end whatever happens to the caller; every call returns
// once that work has ended, or with ctx's error when ctx ends first (the
// work still completes in the background, for example once a blocked
// OnMessage returns, and a later Stop then returns promptly). It is safe to
// call concurrently with sends, which then fail with ErrStopped.
func (t *Transport) Stop(ctx context.Context) error {
	t.stopOnce.Do(func() { go t.stop() })
	select {
	case <-t.stopDone:
		return t.stopErr
	case <-ctx.Done():
		return fmt.Errorf("transport: stop: %w", ctx.Err())
	}
}

// stop is the work of Stop; it runs once, in its own goroutine, and closes
// stopDone when it is done.
func (t *Transport) stop() {
	defer close(t.stopDone)
	t.mu.Lock()
	t.stopped = true
	t.cancel()
	var chans []*channel
	for _, p := range t.peers {
		if p.ch != nil {
			chans = append(chans, p.ch)
			stopProbesLocked(p.ch)
		}
		if p.strayTimer != nil {
			p.strayTimer.Stop()
		}
		p.signalLocked() // wake waiting Sends: they see ErrStopped
	}
	t.mu.Unlock()
	for _, ch := range chans {
		_ = ch.s.Close()
	}
	t.stopErr = t.h.Close()
	t.wg.Wait()
	t.mu.Lock()
	for _, p := range t.peers {
		p.ch = nil
	}
	t.channels = 0
	t.mu.Unlock()
	t.events.Close()
	t.evWG.Wait()
	t.sum.Stop()
	t.log.Info("transport stopped", "peer", t.self)
}

// stateCounts counts peers per state, for the metrics.
func (t *Transport) stateCounts() map[State]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	counts := map[State]int{}
	for _, p := range t.peers {
		counts[p.state]++
	}
	return counts
}
