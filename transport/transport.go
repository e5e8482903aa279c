// Package transport keeps one resilient, long-lived channel per peer over
// libp2p, wire-compatible with the JavaScript ocap-kernel (protocol
// "whatever", varint length-prefixed JSON frames, an incarnation handshake on
// every new stream).
//
// It is the Go counterpart of upstream's platform transport: it dials peers
// on demand, queues messages while a peer is unreachable and flushes them in
// order on reconnection, reconnects with exponential backoff and full jitter,
// detects silent partitions with libp2p ping, notices wake from sleep,
// reserves on relays and keeps the reservations, lets the application close a
// link on purpose and tells the peer, and stops cleanly. Messages are opaque
// bytes here; sequence numbers and acknowledgements belong to package node.
//
// Concurrency: one mutex, Transport.mu, guards the peer table and every
// peer's state. Writes to a peer are serialised by that peer's send
// semaphore, taken before mu when both are needed. Every goroutine the
// transport starts is tracked by Transport.wg and ends by Stop.
package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/time/rate"

	"github.com/ocapnet/ocapnet/internal/backoff"
	"github.com/ocapnet/ocapnet/internal/wake"
	"github.com/ocapnet/ocapnet/wire"
)

// ControlProtocol is the libp2p protocol of ocapnet's control stream, used
// only with peers that announced FeatureClose in their handshake. It carries
// the intentional-close signal (docs/PROTOCOL.md). JavaScript peers never see
// it.
const ControlProtocol = "/ocapnet/control/1.0.0"

// FeatureClose is the handshake feature of peers that understand the close
// signal on ControlProtocol.
const FeatureClose = "close"

var ourFeatures = []string{FeatureClose}

const (
	maxHintsPerPeer   = 32
	closeSignalWait   = 2 * time.Second
	drainWait         = 5 * time.Second
	failedRetryAttemp = 1 << 20 // an attempt number whose backoff ceiling is the cap
)

// applyDefaults fills zero fields with the documented defaults and checks
// the required ones.
func (o *Options) applyDefaults() error {
	if o.IncarnationID == "" {
		return errors.New("transport: Options.IncarnationID is required")
	}
	if len(o.ListenAddrs) == 0 {
		o.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ReconnectBaseDelay, 500*time.Millisecond)
	def(&o.ReconnectMaxDelay, 10*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.DialTimeout, 30*time.Second)
	def(&o.LivenessInterval, 10*time.Second)
	def(&o.LivenessTimeout, 10*time.Second)
	def(&o.WakeInterval, wake.DefaultInterval)
	def(&o.WakeThreshold, wake.DefaultThreshold)
	def(&o.FailureMinDuration, 10*time.Minute)
	def(&o.StalePeerTimeout, time.Hour)
	def(&o.CleanupInterval, 15*time.Minute)
	def(&o.RelayRedialBase, 5*time.Second)
	def(&o.RelayRedialMax, 60*time.Second)
	if o.MaxQueue <= 0 {
		o.MaxQueue = 200
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = wire.DefaultMaxMessageSize
	}
	if o.InboundRate <= 0 {
		o.InboundRate = 1_000_000
	}
	if o.InboundBurst <= 0 {
		o.InboundBurst = 100_000
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 100
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 5
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Transport is a running transport. Create it with Start; stop it with Stop.
type Transport struct {
	opts    Options
	h       host.Host
	handler Handler
	log     *slog.Logger
	self    peer.ID
	metrics *metrics
	events  *eventQueue
	policy  backoff.Policy

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	relays []*relayState

	mu       sync.Mutex
	stopped  bool
	stopDone chan struct{}
	peers    map[peer.ID]*peerState
	channels int    // peers with a registered channel
	gens     uint64 // channel generations handed out (guarded by mu)
}

// peerState is one peer's state. All fields but id and sendSem are guarded
// by Transport.mu.
type peerState struct {
	id      peer.ID
	sendSem chan struct{} // one slot: held while writing to the peer

	state        State
	since        time.Time
	ch           *channel // the registered channel
	queue        [][]byte
	queueGen     uint64 // bumped when the queue is taken away (give-up)
	flushing     bool   // the queue is being written on ch: new sends queue behind it
	pinned       bool
	wantDial     bool // Reconnect asked for a connection
	hints        []string
	closed       bool // closed here with Close
	closedByPeer bool // the peer sent the close signal
	gaveUp       bool
	dialing      bool // the connector goroutine runs
	attempt      int
	nextRetry    time.Time
	lastErr      string
	failed       bool
	history      []failure
	incarnation  string
	features     []string
	lastActive   time.Time
	wake         chan struct{} // cuts a backoff wait short
	gate         int           // losing channels still being drained + outbound handshakes in progress
	gateN        atomic.Int32  // mirror of gate for the readers' lock-free fast path
	gateChanged  chan struct{} // closed (and replaced) whenever the gate or a channel's loser flag changes
	limiter      *rate.Limiter
	deliverMu    sync.Mutex // held while OnMessage runs: one at a time per peer
}

type failure struct {
	code string
	at   time.Time
}

// channel is one handshaken stream.
type channel struct {
	p           *peerState
	s           network.Stream
	r           *wire.Reader
	outbound    bool
	features    []string
	incarnation string
	loser       bool   // replaced by a simultaneous channel; read to its end (guarded by mu)
	gen         uint64 // generation, unique per transport, set when registered (guarded by mu)
	acked       bool   // inbound: our handshakeAck is written, so the stream may be half-closed (guarded by mu)

	writeDeadline time.Time // guarded by the peer's send semaphore
}

// Start creates the libp2p host, starts listening, reserves on the relays
// and returns the running transport.
func Start(ctx context.Context, opts Options, h Handler) (*Transport, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	var relayInfos []peer.AddrInfo
	var relayAddrs []ma.Multiaddr
	for _, r := range opts.Relays {
		a, err := ma.NewMultiaddr(r)
		if err != nil {
			return nil, fmt.Errorf("transport: relay %q: %w", r, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fmt.Errorf("transport: relay %q must end in /p2p/<peer ID>: %w", r, err)
		}
		relayInfos = append(relayInfos, *ai)
		relayAddrs = append(relayAddrs, a)
	}
	hst, err := newHost(&opts, relayAddrs)
	if err != nil {
		return nil, fmt.Errorf("transport: starting libp2p: %w", err)
	}
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &Transport{
		opts:     opts,
		h:        hst,
		handler:  h,
		log:      opts.Logger,
		self:     hst.ID(),
		metrics:  newMetrics(opts.Metrics),
		policy:   backoff.Policy{Base: opts.ReconnectBaseDelay, Max: opts.ReconnectMaxDelay, Rand: opts.backoffRand},
		ctx:      tctx,
		cancel:   cancel,
		stopDone: make(chan struct{}),
		peers:    map[peer.ID]*peerState{},
	}
	t.events = newEventQueue(h.OnEvent)
	t.metrics.peersFunc = t.stateCounts
	hst.SetStreamHandler(wire.ProtocolID, t.handleStream)
	hst.SetStreamHandler(ControlProtocol, t.handleControl)

	sub, err := hst.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		cancel()
		hst.Close()
		return nil, fmt.Errorf("transport: event bus: %w", err)
	}
	for _, ai := range relayInfos {
		t.relays = append(t.relays, &relayState{info: ai, poke: make(chan struct{}, 1)})
	}
	t.goTracked(func() { t.watchConnectedness(sub) })
	for _, r := range t.relays {
		t.goTracked(func() { t.keepRelay(r) })
	}
	if opts.LivenessInterval > 0 {
		t.goTracked(t.livenessLoop)
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

// MaxMessageSize returns the largest message Send accepts, in bytes.
func (t *Transport) MaxMessageSize() int { return t.opts.MaxMessageSize }

// PeerID returns this node's peer ID.
func (t *Transport) PeerID() peer.ID { return t.self }

// Host returns the underlying libp2p host, for tests and benchmarks.
func (t *Transport) Host() host.Host { return t.h }

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
		r.mu.Lock()
		reserved := r.status.Reserved
		r.mu.Unlock()
		if !reserved {
			continue
		}
		for _, a := range r.info.Addrs {
			out = append(out, a.String()+"/p2p/"+r.info.ID.String()+"/p2p-circuit"+suffix)
		}
	}
	return out
}

// peerLocked returns the state of p, creating it. Caller holds mu.
func (t *Transport) peerLocked(id peer.ID) *peerState {
	p := t.peers[id]
	if p == nil {
		now := t.opts.Now()
		p = &peerState{
			id:          id,
			sendSem:     make(chan struct{}, 1),
			since:       now,
			lastActive:  now,
			wake:        make(chan struct{}, 1),
			gateChanged: make(chan struct{}),
			limiter:     rate.NewLimiter(t.opts.InboundRate, t.opts.InboundBurst),
		}
		t.peers[id] = p
	}
	return p
}

// setStateLocked moves p to s and emits StateChanged if it changed.
func (t *Transport) setStateLocked(p *peerState, s State) {
	if p.state == s && s != StateReconnecting {
		return
	}
	p.state = s
	p.since = t.opts.Now()
	t.events.push(StateChanged{Peer: t.infoLocked(p)})
}

func (t *Transport) infoLocked(p *peerState) PeerInfo {
	info := PeerInfo{
		ID:          p.id,
		State:       p.state,
		LastError:   p.lastErr,
		QueueDepth:  len(p.queue),
		Pinned:      p.pinned,
		Incarnation: p.incarnation,
		Features:    slices.Clone(p.features),
		Since:       p.since,
	}
	if p.state == StateConnecting || p.state == StateReconnecting || p.state == StateFailed {
		info.Attempt = p.attempt
		info.NextRetry = p.nextRetry
	}
	if p.ch != nil {
		info.RemoteAddr = p.ch.s.Conn().RemoteMultiaddr().String()
	}
	return info
}

// Peers returns a snapshot of every known peer's state.
func (t *Transport) Peers() []PeerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PeerInfo, 0, len(t.peers))
	for _, p := range t.peers {
		out = append(out, t.infoLocked(p))
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) })
	return out
}

// addHintsLocked merges hints into p's set (insertion order, no duplicates,
// at most maxHintsPerPeer: the oldest are dropped).
func (t *Transport) addHintsLocked(p *peerState, hints []string) {
	for _, h := range hints {
		if h == "" || slices.Contains(p.hints, h) {
			continue
		}
		p.hints = append(p.hints, h)
	}
	if n := len(p.hints) - maxHintsPerPeer; n > 0 {
		p.hints = slices.Delete(p.hints, 0, n)
	}
}

func (t *Transport) checkHints(id peer.ID, hints []string) error {
	for _, h := range hints {
		if _, _, err := parseHint(id, h); err != nil {
			return err
		}
	}
	return nil
}

// RegisterHints adds location hints (multiaddrs) for a peer: addresses ending
// in the peer's own /p2p/ are dialled directly, others are relays to reach
// it through. Invalid hints are ignored and logged.
func (t *Transport) RegisterHints(id peer.ID, hints ...string) {
	var ok []string
	for _, h := range hints {
		if _, _, err := parseHint(id, h); err != nil {
			t.log.Warn("ignoring invalid hint", "peer", id, "err", err)
			continue
		}
		ok = append(ok, h)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.addHintsLocked(t.peerLocked(id), ok)
}

// refuseLocked returns the error for sending to p, if sends are refused.
func (t *Transport) refuseLocked(p *peerState) error {
	switch {
	case t.stopped:
		return ErrStopped
	case p.closed:
		return fmt.Errorf("send to %s: %w", p.id, ErrIntentionallyClosed)
	case p.closedByPeer:
		return fmt.Errorf("send to %s: %w", p.id, ErrClosedByPeer)
	}
	return nil
}

// Send delivers msg to peer p. On an open channel with nothing queued ahead
// it writes at once and returns after the write: a peer that reads slowly
// slows the sender down (backpressure), within ctx (for the wait for a turn
// to write) and WriteTimeout (for the write itself). Otherwise the message
// is queued (at most MaxQueue per peer: ErrQueueFull refuses the new message,
// older ones are never dropped), a connection attempt is started, and Send
// returns nil: the queue is flushed in order on connection, and a GaveUp
// event returns every queued message that can never be written. hints are
// added to the peer's location hints first.
func (t *Transport) Send(ctx context.Context, id peer.ID, msg []byte, hints ...string) error {
	if len(msg) > t.opts.MaxMessageSize {
		return fmt.Errorf("send to %s: %w: %d bytes, limit %d", id, ErrMessageTooLarge, len(msg), t.opts.MaxMessageSize)
	}
	if err := t.checkHints(id, hints); err != nil {
		return err
	}
	_, err := t.send(ctx, id, msg, hints, true, 0)
	return err
}

// TrySend writes msg to p only if a channel is open and nothing is queued
// for p; it never queues and returns ErrNotConnected otherwise (starting a
// connection attempt only if p is pinned). It is for a layer above that keeps
// its own queue, such as package node's durable log.
func (t *Transport) TrySend(ctx context.Context, id peer.ID, msg []byte) error {
	_, err := t.TrySendOn(ctx, id, msg, 0)
	return err
}

// TrySendOn is TrySend restricted to the peer's channel of generation gen
// (0: whichever is open). It returns the generation of the channel it wrote
// on, or, with ErrChannelChanged and without writing, the generation of the
// channel that replaced gen's. A layer above that numbers its frames uses it
// to notice a channel switch before writing on the new channel: frames it
// wrote on the old one may never be read (a JavaScript peer closes a replaced
// stream, and then accepts the gap), so it resends from its last
// acknowledgement first.
func (t *Transport) TrySendOn(ctx context.Context, id peer.ID, msg []byte, gen uint64) (uint64, error) {
	if len(msg) > t.opts.MaxMessageSize {
		return 0, fmt.Errorf("send to %s: %w: %d bytes, limit %d", id, ErrMessageTooLarge, len(msg), t.opts.MaxMessageSize)
	}
	return t.send(ctx, id, msg, nil, false, gen)
}

func (t *Transport) send(ctx context.Context, id peer.ID, msg []byte, hints []string, queue bool, gen uint64) (uint64, error) {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return 0, ErrStopped
	}
	p := t.peerLocked(id)
	t.addHintsLocked(p, hints)
	if err := t.refuseLocked(p); err != nil {
		t.mu.Unlock()
		return 0, err
	}
	if queue {
		// An application send clears a failed or given-up state: the
		// application wants the peer now (reference §5.7, #807).
		p.failed, p.gaveUp = false, false
	}
	direct := p.ch != nil && !p.flushing && len(p.queue) == 0
	if !direct {
		err := t.enqueueLocked(p, msg, queue)
		t.mu.Unlock()
		return 0, err
	}
	t.mu.Unlock()

	select {
	case p.sendSem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.ctx.Done():
		return 0, ErrStopped
	}
	t.mu.Lock()
	if err := t.refuseLocked(p); err != nil {
		t.mu.Unlock()
		<-p.sendSem
		return 0, err
	}
	if p.ch == nil || p.flushing || len(p.queue) > 0 {
		err := t.enqueueLocked(p, msg, queue)
		t.mu.Unlock()
		<-p.sendSem
		return 0, err
	}
	ch := p.ch
	t.mu.Unlock()
	if gen != 0 && ch.gen != gen {
		<-p.sendSem
		return ch.gen, fmt.Errorf("send to %s: %w", id, ErrChannelChanged)
	}
	werr := t.write(ch, msg)
	err := werr
	if werr != nil && queue {
		// The message may or may not have reached the peer. Keep it
		// first in the queue so it is written again on the next channel
		// (never lost, never reordered; possibly received twice — the
		// node layer drops such duplicates by sequence number).
		t.mu.Lock()
		if !t.stopped && !p.closed && !p.closedByPeer {
			p.queue = append([][]byte{slices.Clone(msg)}, p.queue...)
			t.metrics.queued.Inc()
			err = nil
		}
		t.mu.Unlock()
	}
	<-p.sendSem
	if werr != nil {
		t.channelFailed(ch, werr)
	}
	return ch.gen, err
}

// enqueueLocked queues msg for p (Send) or refuses (TrySend).
func (t *Transport) enqueueLocked(p *peerState, msg []byte, queue bool) error {
	if !queue {
		if p.pinned {
			t.ensureConnectorLocked(p)
		}
		return fmt.Errorf("send to %s: %w", p.id, ErrNotConnected)
	}
	if p.ch == nil && !p.dialing && t.channels >= t.opts.MaxConnections {
		return fmt.Errorf("send to %s: %w: %d channels open", p.id, ErrConnectionLimit, t.channels)
	}
	if len(p.queue) >= t.opts.MaxQueue {
		return fmt.Errorf("send to %s: %w: %d messages queued", p.id, ErrQueueFull, len(p.queue))
	}
	p.queue = append(p.queue, slices.Clone(msg))
	t.metrics.queued.Inc()
	t.ensureConnectorLocked(p)
	return nil
}

// write writes one frame on ch within WriteTimeout. The caller holds the
// peer's send semaphore (which also guards ch.writeDeadline). The stream's
// write deadline is refreshed only when less than half of WriteTimeout is
// left, so a write always has between WriteTimeout/2 and WriteTimeout, and
// the hot path does not reset a timer per frame.
func (t *Transport) write(ch *channel, msg []byte) error {
	now := time.Now()
	if ch.writeDeadline.Sub(now) < t.opts.WriteTimeout/2 {
		ch.writeDeadline = now.Add(t.opts.WriteTimeout)
		if err := ch.s.SetWriteDeadline(ch.writeDeadline); err != nil {
			return fmt.Errorf("write to %s: %w", ch.p.id, err)
		}
	}
	if err := wire.WriteFrame(ch.s, msg); err != nil {
		return fmt.Errorf("write to %s: %w", ch.p.id, err)
	}
	t.metrics.msgsOut.Inc()
	t.metrics.bytesOut.Add(float64(len(msg)))
	return nil
}

// SetPinned marks p as having work the layer above needs to deliver (or as
// wanted by the application): while pinned, the transport connects to p and
// reconnects after every loss, as it does for a peer with queued messages.
// Unpinned peers with nothing queued are not redialled after a loss.
func (t *Transport) SetPinned(id peer.ID, pinned bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	p := t.peerLocked(id)
	p.pinned = pinned
	if pinned && p.ch == nil && !p.closed && !p.closedByPeer {
		p.gaveUp = false
		t.ensureConnectorLocked(p)
	}
}

// needsConnLocked reports whether p should be (re)connected.
func (t *Transport) needsConnLocked(p *peerState) bool {
	return len(p.queue) > 0 || p.pinned || p.wantDial
}

// ensureConnectorLocked starts p's connector goroutine unless it runs or
// there is nothing to do.
func (t *Transport) ensureConnectorLocked(p *peerState) {
	if t.stopped || p.dialing || p.ch != nil || p.closed || p.closedByPeer || p.gaveUp || !t.needsConnLocked(p) {
		return
	}
	p.dialing = true
	t.goTracked(func() { t.connect(p) })
}

// poke cuts p's backoff wait short.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// connect is p's connector: it dials until a channel is registered, the
// peer no longer needs one, the transport stops, or it gives up.
func (t *Transport) connect(p *peerState) {
	for {
		t.mu.Lock()
		if t.stopped || p.closed || p.closedByPeer || p.ch != nil || !t.needsConnLocked(p) {
			p.dialing = false
			if p.ch == nil && !t.stopped && !p.closed && !p.closedByPeer {
				t.setStateLocked(p, StateIdle)
			}
			t.mu.Unlock()
			return
		}
		if t.opts.MaxRetryAttempts > 0 && p.attempt >= t.opts.MaxRetryAttempts {
			t.giveUpLocked(p, fmt.Errorf("%w after %d attempts: %s", ErrRetriesExhausted, p.attempt, p.lastErr))
			t.mu.Unlock()
			return
		}
		p.attempt++
		attempt := p.attempt
		var wait time.Duration
		switch {
		case p.failed && attempt > 1:
			wait = t.policy.Delay(failedRetryAttemp)
		case attempt > 1:
			wait = t.policy.Delay(attempt - 1)
		}
		p.nextRetry = t.opts.Now().Add(wait)
		switch {
		case p.failed:
			t.setStateLocked(p, StateFailed)
		case attempt == 1 && p.state != StateReconnecting:
			t.setStateLocked(p, StateConnecting)
		default:
			t.setStateLocked(p, StateReconnecting)
		}
		t.metrics.attempts.Inc()
		t.mu.Unlock()

		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-t.ctx.Done():
			case <-p.wake:
			case <-timer.C:
			}
			timer.Stop()
			if t.ctx.Err() != nil {
				continue // the loop top sees stopped
			}
		}
		t.log.Debug("dialing", "peer", p.id, "attempt", attempt)
		err := t.dial(p)
		if err == nil {
			return // registered: register cleared dialing
		}
		class, code := classify(err)
		t.mu.Lock()
		p.lastErr = err.Error()
		if class == classFatal && !t.stopped {
			t.log.Warn("giving up on peer: error is not retryable", "peer", p.id, "err", err)
			t.giveUpLocked(p, err)
			t.mu.Unlock()
			return
		}
		now := t.opts.Now()
		p.history = append(p.history, failure{code: code, at: now})
		if n := len(p.history) - t.opts.FailureThreshold; n > 0 {
			p.history = slices.Delete(p.history, 0, n)
		}
		if class == classUnreachable && !p.failed && t.permanentlyFailedLocked(p) {
			p.failed = true
			t.setStateLocked(p, StateFailed)
			t.log.Warn("peer marked failed: unreachable for a long time", "peer", p.id, "code", code, "since", p.history[0].at)
		}
		t.log.Debug("dial failed", "peer", p.id, "attempt", attempt, "code", code, "err", err)
		t.mu.Unlock()
	}
}

// permanentlyFailedLocked: the last FailureThreshold errors are identical,
// of an unreachable kind, and span at least FailureMinDuration.
func (t *Transport) permanentlyFailedLocked(p *peerState) bool {
	if len(p.history) < t.opts.FailureThreshold {
		return false
	}
	first := p.history[0]
	for _, f := range p.history[1:] {
		if f.code != first.code {
			return false
		}
	}
	return p.history[len(p.history)-1].at.Sub(first.at) >= t.opts.FailureMinDuration
}

// giveUpLocked stops trying to reach p and returns its queue in a GaveUp.
func (t *Transport) giveUpLocked(p *peerState, reason error) {
	p.dialing = false
	p.gaveUp = true
	p.wantDial = false
	t.takeQueueLocked(p, reason)
	t.setStateLocked(p, StateGaveUp)
}

// takeQueueLocked empties p's queue into a GaveUp event.
func (t *Transport) takeQueueLocked(p *peerState, reason error) {
	q := p.queue
	p.queue = nil
	p.queueGen++
	p.flushing = false
	t.metrics.giveUps.WithLabelValues(reasonLabel(reason)).Inc()
	if len(q) > 0 {
		t.metrics.queued.Sub(float64(len(q)))
	}
	t.events.push(GaveUp{Peer: p.id, Reason: reason, Messages: q})
}

func reasonLabel(err error) string {
	switch {
	case errors.Is(err, ErrIntentionallyClosed):
		return "closed"
	case errors.Is(err, ErrClosedByPeer):
		return "closed-by-peer"
	case errors.Is(err, ErrPeerRestarted):
		return "peer-restarted"
	case errors.Is(err, ErrStopped):
		return "stopped"
	case errors.Is(err, ErrRetriesExhausted):
		return "retries-exhausted"
	}
	return "error"
}

// candidates returns the addresses to dial p at: direct hints, then relay
// hints and configured relays as /p2p-circuit addresses (reference §4.2;
// the /p2p-circuit/webrtc candidates are skipped: go-libp2p has no /webrtc
// transport). The relays' peer IDs are returned too.
func (t *Transport) candidates(p *peerState, hints []string) (addrs []ma.Multiaddr, relays []peer.ID) {
	circuit := ma.StringCast("/p2p-circuit")
	seen := map[string]bool{}
	var relayAddrs []ma.Multiaddr
	for _, h := range hints {
		a, isRelay, err := parseHint(p.id, h)
		if err != nil {
			continue
		}
		if isRelay {
			relayAddrs = append(relayAddrs, a)
		} else if !seen[a.String()] {
			seen[a.String()] = true
			addrs = append(addrs, a)
		}
	}
	for _, r := range t.relays {
		for _, a := range r.info.Addrs {
			relayAddrs = append(relayAddrs, a.Encapsulate(ma.StringCast("/p2p/"+r.info.ID.String())))
		}
	}
	for _, ra := range relayAddrs {
		if id, err := peer.IDFromP2PAddr(ra); err == nil {
			relays = append(relays, id)
		}
		c := ra.Encapsulate(circuit)
		if !seen[c.String()] {
			seen[c.String()] = true
			addrs = append(addrs, c)
		}
	}
	return addrs, relays
}

// dial opens and handshakes a channel to p, and registers it.
func (t *Transport) dial(p *peerState) error {
	t.mu.Lock()
	hints := slices.Clone(p.hints)
	if p.ch == nil && t.channels >= t.opts.MaxConnections {
		t.mu.Unlock()
		return fmt.Errorf("dial %s: %w", p.id, ErrConnectionLimit)
	}
	t.mu.Unlock()
	addrs, relays := t.candidates(p, hints)
	if sw, ok := t.h.Network().(*swarm.Swarm); ok {
		// Our schedule is the one that counts: clear go-libp2p's own dial
		// backoff for the target and the relays in its circuits.
		sw.Backoff().Clear(p.id)
		for _, r := range relays {
			sw.Backoff().Clear(r)
		}
	}
	if len(addrs) > 0 {
		t.h.Peerstore().AddAddrs(p.id, addrs, peerstore.TempAddrTTL)
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.opts.DialTimeout)
	defer cancel()
	s, err := t.h.NewStream(network.WithAllowLimitedConn(ctx, "ocapnet"), p.id, wire.ProtocolID)
	if err != nil {
		if t.ctx.Err() != nil {
			return ErrStopped
		}
		return err
	}
	t.mu.Lock()
	t.gateCloseLocked(p)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.gateReleaseLocked(p)
		t.mu.Unlock()
	}()
	ch, err := t.handshakeOutbound(s, p)
	if err != nil {
		s.Reset()
		t.metrics.handshakeFailures.Inc()
		return err
	}
	if err := t.afterHandshake(ch); err != nil {
		s.Reset()
		return err
	}
	flush, err := t.register(ch)
	if err != nil {
		return err
	}
	t.finishRegistration(ch, flush)
	return nil
}

// finishRegistration half-closes a channel that lost a simultaneous dial
// (we will never write on it; the peer drains it) or flushes the queue on a
// new registered channel.
func (t *Transport) finishRegistration(ch *channel, flush bool) {
	t.mu.Lock()
	loser := ch.loser && ch.p.ch != ch
	t.mu.Unlock()
	if loser {
		closeWrite(ch.s)
		return
	}
	if flush {
		t.flush(ch.p, ch)
	}
}

func (t *Transport) handshakeOutbound(s network.Stream, p *peerState) (*channel, error) {
	_ = s.SetDeadline(time.Now().Add(t.opts.HandshakeTimeout))
	hs := wire.EncodeHandshake(wire.Handshake{IncarnationID: t.opts.IncarnationID, Features: ourFeatures})
	if err := wire.WriteFrame(s, hs); err != nil {
		return nil, fmt.Errorf("%w: writing handshake: %v", ErrHandshakeFailed, err)
	}
	r := wire.NewReader(s, t.opts.MaxMessageSize)
	frame, err := r.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("%w: reading handshakeAck: %v", ErrHandshakeFailed, err)
	}
	ack, err := wire.DecodeHandshake(frame)
	if err != nil || !ack.Ack {
		return nil, fmt.Errorf("%w: expected handshakeAck: %v", ErrHandshakeFailed, errOr(err, "got handshake"))
	}
	_ = s.SetDeadline(time.Time{})
	return &channel{p: p, s: s, r: r, outbound: true, acked: true, features: ack.Features, incarnation: ack.IncarnationID}, nil
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}

// afterHandshake asks the layer above about the peer's incarnation.
func (t *Transport) afterHandshake(ch *channel) error {
	if t.handler.OnHandshake == nil {
		return nil
	}
	restarted, err := t.handler.OnHandshake(ch.p.id, ch.incarnation)
	if err != nil {
		t.metrics.handshakeFailures.Inc()
		return fmt.Errorf("%w: rejected by the layer above: %v", ErrHandshakeFailed, err)
	}
	if restarted {
		t.mu.Lock()
		// Make the in-memory check below see a change even on first sight.
		if ch.p.incarnation == "" || ch.p.incarnation == ch.incarnation {
			ch.p.incarnation = "(restarted)"
		}
		t.mu.Unlock()
	}
	return nil
}

// keepNew decides which of two channels to the same peer survives. Between
// ocapnet peers (the new channel's handshake announced FeatureClose) the
// rule is deterministic on both sides: of a stream we opened and one the peer
// opened, keep the one opened by the smaller peer ID; of two opened by the
// same side, the newer replaces the older. With other peers (JavaScript) the
// newer wins, as upstream's registerChannel does.
func (t *Transport) keepNew(old, nw *channel) bool {
	if !slices.Contains(nw.features, FeatureClose) || old.outbound == nw.outbound {
		return true
	}
	opener := func(c *channel) peer.ID {
		if c.outbound {
			return t.self
		}
		return c.p.id
	}
	return opener(nw) < opener(old)
}

// register makes ch p's channel (or a loser to be drained) and starts its
// read loop if it is outbound. The caller then flushes the queue if flush is
// true (after writing the handshakeAck, for an inbound channel), and
// half-closes a losing channel once it has written what it must on it.
func (t *Transport) register(ch *channel) (flush bool, err error) {
	p := ch.p
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		ch.s.Reset()
		return false, ErrStopped
	}
	if p.closed {
		t.mu.Unlock()
		ch.s.Reset()
		return false, fmt.Errorf("register %s: %w", p.id, ErrIntentionallyClosed)
	}
	t.gens++
	ch.gen = t.gens
	if prev := p.incarnation; prev != "" && prev != ch.incarnation {
		if prev == "(restarted)" {
			prev = ""
		}
		t.log.Info("peer restarted", "peer", p.id, "previous", prev, "current", ch.incarnation)
		t.events.push(PeerRestarted{Peer: p.id, Previous: prev, Current: ch.incarnation})
		if len(p.queue) > 0 {
			t.takeQueueLocked(p, fmt.Errorf("messages queued for %s before it restarted: %w", p.id, ErrPeerRestarted))
		}
	}
	p.incarnation = ch.incarnation
	p.features = ch.features
	if p.closedByPeer && !ch.outbound {
		p.closedByPeer = false // the closer dialled us again
	}
	old := p.ch
	if old != nil {
		t.log.Debug("two channels to one peer: keeping one", "peer", p.id, "keepNew", t.keepNew(old, ch), "newOutbound", ch.outbound, "new", ch.s.ID(), "old", old.s.ID())
	} else {
		t.log.Debug("channel registered", "peer", p.id, "stream", ch.s.ID(), "outbound", ch.outbound)
	}
	if old != nil && !t.keepNew(old, ch) {
		ch.loser = true
		if ch.outbound {
			p.dialing = false // the connector's dial ends here
		}
		t.gateCloseLocked(p)
		t.mu.Unlock()
		t.startReader(ch, ch.outbound) // inbound: the stream handler reads it
		return false, nil
	}
	oldAcked := false
	if old != nil {
		old.loser = true
		oldAcked = old.acked
		t.gateCloseLocked(p)
	} else {
		t.channels++
	}
	p.ch = ch
	p.dialing = false
	p.wantDial = false
	p.gaveUp = false
	p.attempt = 0
	p.failed = false
	p.history = nil
	p.lastErr = ""
	p.lastActive = t.opts.Now()
	p.flushing = len(p.queue) > 0
	flushing := p.flushing
	t.setStateLocked(p, StateConnected)
	t.mu.Unlock()
	t.h.ConnManager().Protect(p.id, "ocapnet-channel")
	if old != nil && oldAcked {
		// Stop writing to the replaced channel once any write in progress
		// ends; its reader keeps delivering until the peer's end closes.
		// (An inbound channel whose handshakeAck is not written yet is
		// half-closed by its stream handler right after the ack.)
		t.goTracked(func() {
			p.sendSem <- struct{}{}
			closeWrite(old.s)
			<-p.sendSem
		})
	}
	t.startReader(ch, ch.outbound)
	return flushing, nil
}

// startReader runs ch's read loop: in a new goroutine for outbound channels,
// or (inbound) it is run by the caller, the libp2p stream handler.
func (t *Transport) startReader(ch *channel, spawn bool) {
	if spawn {
		t.mu.Lock()
		if t.stopped {
			t.mu.Unlock()
			ch.s.Reset()
			return
		}
		t.goTracked(func() { t.readLoop(ch) })
		t.mu.Unlock()
	}
}

func closeWrite(s network.Stream) { _ = s.CloseWrite() }

// The delivery gate keeps a peer's winning channel from delivering frames
// while a losing channel may still hold older ones: while a loser is being
// drained, and while one of our outbound handshakes is in progress (the peer
// may already have registered that stream and written on it).
func (t *Transport) gateCloseLocked(p *peerState) {
	p.gate++
	p.gateN.Store(int32(p.gate))
	t.gateNotifyLocked(p)
}

func (t *Transport) gateReleaseLocked(p *peerState) {
	p.gate--
	p.gateN.Store(int32(p.gate))
	t.gateNotifyLocked(p)
}

// gateNotifyLocked wakes every reader waiting at p's gate to re-check it.
func (t *Transport) gateNotifyLocked(p *peerState) {
	close(p.gateChanged)
	p.gateChanged = make(chan struct{})
}

// waitGate blocks ch's reader while p's gate is closed, unless ch is (or
// becomes) a losing channel, which delivers freely. The wait is bounded so
// that a peer that never finishes a handshake or a drain cannot stall us.
func (t *Transport) waitGate(ch *channel) {
	p := ch.p
	var deadline <-chan time.Time
	for {
		t.mu.Lock()
		if ch.loser || p.gate == 0 {
			t.mu.Unlock()
			return
		}
		changed := p.gateChanged
		t.mu.Unlock()
		if deadline == nil {
			timer := time.NewTimer(t.opts.HandshakeTimeout + drainWait)
			defer timer.Stop()
			deadline = timer.C
		}
		select {
		case <-changed:
		case <-deadline:
			t.log.Warn("delivering without waiting for a replaced channel to drain", "peer", p.id)
			return
		case <-t.ctx.Done():
			return
		}
	}
}

// flush writes p's queue on ch in FIFO order, before any newer message. A
// failed write leaves the unsent remainder queued, in order.
func (t *Transport) flush(p *peerState, ch *channel) {
	select {
	case p.sendSem <- struct{}{}:
	case <-t.ctx.Done():
		return
	}
	defer func() { <-p.sendSem }()
	for {
		t.mu.Lock()
		if p.ch != ch || len(p.queue) == 0 || t.stopped {
			if p.ch == ch {
				p.flushing = false
			}
			t.mu.Unlock()
			return
		}
		msg, gen := p.queue[0], p.queueGen
		t.mu.Unlock()
		if err := t.write(ch, msg); err != nil {
			t.mu.Lock()
			if p.ch == ch {
				p.flushing = false
			}
			t.mu.Unlock()
			t.channelFailed(ch, err)
			return
		}
		t.mu.Lock()
		if p.queueGen == gen && len(p.queue) > 0 {
			p.queue = p.queue[1:]
			t.metrics.queued.Dec()
		}
		t.mu.Unlock()
	}
}

// readLoop reads frames from ch and hands them to OnMessage, one at a time,
// after the peer's inbound rate limiter allows (pausing reads, never
// dropping). A replaced channel's loop first lets its replacement wait until
// it is drained, so that frames are delivered in the order they were written.
func (t *Transport) readLoop(ch *channel) {
	p := ch.p
	for {
		frame, err := ch.r.ReadFrame()
		if err != nil {
			t.readEnded(ch, err)
			return
		}
		if p.gateN.Load() != 0 {
			t.waitGate(ch)
		}
		if !p.limiter.Allow() {
			if err := p.limiter.Wait(t.ctx); err != nil {
				t.readEnded(ch, ErrStopped)
				return
			}
		}
		t.metrics.msgsIn.Inc()
		t.metrics.bytesIn.Add(float64(len(frame)))
		if t.log.Enabled(context.Background(), slog.LevelDebug-4) {
			t.log.Log(context.Background(), slog.LevelDebug-4, "deliver", "peer", p.id, "stream", ch.s.ID(), "frame", string(frame))
		}
		if t.handler.OnMessage != nil {
			p.deliverMu.Lock()
			t.handler.OnMessage(p.id, frame)
			p.deliverMu.Unlock()
		}
	}
}

// readEnded handles the end of ch's read loop.
func (t *Transport) readEnded(ch *channel, err error) {
	p := ch.p
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrPrefixTooLong):
		t.metrics.oversize.Inc()
		t.log.Warn("closing channel: oversize inbound frame", "peer", p.id, "err", err)
	case err == io.EOF:
		t.log.Debug("channel closed by peer", "peer", p.id)
	default:
		t.log.Debug("channel read ended", "peer", p.id, "err", err)
	}
	t.mu.Lock()
	t.log.Debug("read loop ended", "peer", p.id, "stream", ch.s.ID(), "loser", ch.loser, "err", err)
	if ch.loser {
		t.gateReleaseLocked(p)
		t.mu.Unlock()
		_ = ch.s.Close()
		return
	}
	if err == io.EOF {
		// The peer closed its side cleanly. Close ours gracefully too
		// (no reset): frames we already wrote must still reach it, for
		// example when it stopped writing on a stream that lost a
		// simultaneous dial before we learnt of the winner.
		t.forgetChannelLocked(ch, fmt.Errorf("channel to %s closed by the peer", p.id))
		t.mu.Unlock()
		_ = ch.s.Close()
		return
	}
	t.forgetChannelLocked(ch, err)
	t.mu.Unlock()
	_ = ch.s.Reset()
}

// channelFailed forgets ch (if it is still p's channel: a replaced channel
// never tears down its successor, W9), resets its stream and reconnects if
// there is something to deliver.
func (t *Transport) channelFailed(ch *channel, err error) {
	_ = ch.s.Reset()
	t.mu.Lock()
	t.forgetChannelLocked(ch, err)
	t.mu.Unlock()
}

// forgetChannelLocked unregisters ch if it is p's channel and starts a
// reconnection when there is something to deliver.
func (t *Transport) forgetChannelLocked(ch *channel, err error) {
	p := ch.p
	if p.ch != ch {
		return
	}
	p.ch = nil
	p.flushing = false
	p.lastActive = t.opts.Now()
	t.channels--
	t.h.ConnManager().Unprotect(p.id, "ocapnet-channel")
	if err != nil && !errors.Is(err, ErrStopped) {
		p.lastErr = err.Error()
	}
	if t.stopped || p.closed || p.closedByPeer {
		return
	}
	if t.needsConnLocked(p) {
		p.attempt = 0
		t.setStateLocked(p, StateReconnecting)
		t.ensureConnectorLocked(p)
		return
	}
	t.setStateLocked(p, StateIdle)
}

// handleStream accepts an inbound `whatever` stream: handshake, then the
// read loop runs in this (libp2p's) goroutine.
func (t *Transport) handleStream(s network.Stream) {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		s.Reset()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()

	id := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(t.opts.HandshakeTimeout))
	r := wire.NewReader(s, t.opts.MaxMessageSize)
	frame, err := r.ReadFrame()
	if err != nil {
		t.metrics.handshakeFailures.Inc()
		t.log.Info("inbound handshake failed", "peer", id, "err", err)
		s.Reset()
		return
	}
	hs, err := wire.DecodeHandshake(frame)
	if err != nil || hs.Ack {
		t.metrics.handshakeFailures.Inc()
		t.log.Info("inbound handshake failed", "peer", id, "err", errOr(err, "got handshakeAck"))
		s.Reset()
		return
	}
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		s.Reset()
		return
	}
	p := t.peerLocked(id)
	if p.closed {
		t.mu.Unlock()
		// We closed this link on purpose: refuse, and tell an ocapnet peer
		// again so that it stops dialling (instead of retrying forever,
		// W10). A JavaScript peer only sees the reset.
		s.Reset()
		if slices.Contains(hs.Features, FeatureClose) {
			t.signalClose(id)
		}
		return
	}
	if p.ch == nil && t.channels >= t.opts.MaxConnections {
		t.mu.Unlock()
		t.log.Warn("refusing inbound channel: connection limit", "peer", id, "limit", t.opts.MaxConnections)
		s.Reset()
		return
	}
	t.mu.Unlock()
	ch := &channel{p: p, s: s, r: r, features: hs.Features, incarnation: hs.IncarnationID}
	if err := t.afterHandshake(ch); err != nil {
		t.log.Info("inbound channel rejected", "peer", id, "err", err)
		s.Reset()
		return
	}
	// Register (decide which of two simultaneous channels survives) before
	// acknowledging: the dialler writes as soon as it has our ack, and its
	// frames must find the channel already classified, or frames of the
	// two channels could be delivered out of order.
	flush, err := t.register(ch)
	if err != nil {
		return
	}
	ack := wire.EncodeHandshake(wire.Handshake{Ack: true, IncarnationID: t.opts.IncarnationID, Features: ourFeatures})
	if err := wire.WriteFrame(s, ack); err != nil {
		t.metrics.handshakeFailures.Inc()
		t.log.Info("inbound handshake failed: writing handshakeAck", "peer", id, "err", err)
		_ = s.Reset()
		t.readLoop(ch) // ends at once; releases what the channel holds
		return
	}
	_ = s.SetDeadline(time.Time{})
	t.mu.Lock()
	ch.acked = true
	t.mu.Unlock()
	t.finishRegistration(ch, flush)
	t.readLoop(ch)
}

// Close closes the link to p on purpose: reconnection stops, queued messages
// come back in a GaveUp event (ErrIntentionallyClosed), later sends are
// refused with ErrIntentionallyClosed until Reconnect, inbound channels from
// p are refused, and an ocapnet peer is told (it then reports
// StateClosedByPeer and stops reconnecting to us).
func (t *Transport) Close(id peer.ID) error {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return ErrStopped
	}
	p := t.peerLocked(id)
	if p.closed {
		t.mu.Unlock()
		return nil
	}
	p.closed, p.closedByPeer, p.wantDial = true, false, false
	poke(p.wake)
	t.setStateLocked(p, StateClosed)
	t.mu.Unlock()

	// Wait for a write in progress, so that every message is either
	// written or returned in the GaveUp, never both.
	p.sendSem <- struct{}{}
	t.mu.Lock()
	ch := p.ch
	if ch != nil {
		p.ch = nil
		t.channels--
	}
	t.takeQueueLocked(p, fmt.Errorf("link to %s closed: %w", id, ErrIntentionallyClosed))
	t.mu.Unlock()
	<-p.sendSem
	if ch != nil {
		t.h.ConnManager().Unprotect(id, "ocapnet-channel")
		if slices.Contains(ch.features, FeatureClose) {
			t.signalClose(id)
		}
		ch.s.Close()
	}
	return nil
}

// signalClose tells an ocapnet peer that we closed the link on purpose: one
// frame {"method":"close"} on a ControlProtocol stream over the existing
// connection, then at most closeSignalWait for the peer's
// {"method":"closeAck"} (docs/PROTOCOL.md).
func (t *Transport) signalClose(id peer.ID) {
	ctx, cancel := context.WithTimeout(t.ctx, closeSignalWait)
	defer cancel()
	ctx = network.WithNoDial(network.WithAllowLimitedConn(ctx, "ocapnet-close"), "close signal")
	s, err := t.h.NewStream(ctx, id, ControlProtocol)
	if err != nil {
		t.log.Debug("close signal not sent", "peer", id, "err", err)
		return
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(closeSignalWait))
	if err := wire.WriteFrame(s, []byte(`{"method":"close"}`)); err != nil {
		return
	}
	_ = s.CloseWrite()
	frame, err := wire.NewReader(s, 1024).ReadFrame()
	if err != nil || string(frame) != `{"method":"closeAck"}` {
		t.log.Debug("no closeAck", "peer", id, "err", err)
	}
}

// handleControl serves ControlProtocol: the peer closed the link on purpose.
func (t *Transport) handleControl(s network.Stream) {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		s.Reset()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	defer s.Close()
	id := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(closeSignalWait))
	frame, err := wire.NewReader(s, 1024).ReadFrame()
	if err != nil || string(frame) != `{"method":"close"}` {
		t.log.Info("ignoring malformed control message", "peer", id, "err", err)
		s.Reset()
		return
	}
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	p := t.peerLocked(id)
	p.closedByPeer, p.wantDial = true, false
	poke(p.wake)
	t.setStateLocked(p, StateClosedByPeer)
	t.mu.Unlock()
	p.sendSem <- struct{}{}
	t.mu.Lock()
	if len(p.queue) > 0 {
		t.takeQueueLocked(p, fmt.Errorf("link closed by %s: %w", id, ErrClosedByPeer))
	}
	ch := p.ch
	if ch != nil {
		// The link is over: forget the channel now rather than when the
		// closer's FIN arrives, so that state and channel agree at once.
		p.ch = nil
		p.flushing = false
		t.channels--
	}
	t.mu.Unlock()
	<-p.sendSem
	t.log.Info("peer closed the link on purpose", "peer", id)
	_ = wire.WriteFrame(s, []byte(`{"method":"closeAck"}`))
	if ch != nil {
		t.h.ConnManager().Unprotect(id, "ocapnet-channel")
		_ = ch.s.Close()
	}
}

// RestoreFailed marks p as failed since the given time, as a layer above
// that persisted the state across a restart reports it: the peer is shown
// as StateFailed and, after one immediate attempt when it has something to
// deliver, retried at the backoff cap. A send, Reconnect or wake clears it.
func (t *Transport) RestoreFailed(id peer.ID, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	p := t.peerLocked(id)
	p.failed = true
	if p.ch == nil {
		t.setStateLocked(p, StateFailed)
		p.since = since
	}
}

// Reconnect clears a Close, a closed-by-peer, failed or given-up state,
// merges hints, and connects to p now (cutting any backoff wait short).
func (t *Transport) Reconnect(id peer.ID, hints ...string) error {
	if err := t.checkHints(id, hints); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return ErrStopped
	}
	p := t.peerLocked(id)
	t.log.Debug("reconnect", "peer", id, "connected", p.ch != nil, "dialing", p.dialing)
	t.addHintsLocked(p, hints)
	p.closed, p.closedByPeer, p.failed, p.gaveUp = false, false, false, false
	p.history = nil
	p.attempt = 0
	if p.ch != nil {
		t.setStateLocked(p, StateConnected)
		return nil
	}
	p.wantDial = true
	poke(p.wake)
	t.ensureConnectorLocked(p)
	return nil
}

// ResetBackoffs resets every peer's backoff and failure state and cuts every
// backoff wait in progress short, so reconnection starts at once. The wake
// detector calls it.
func (t *Transport) ResetBackoffs() {
	t.mu.Lock()
	for _, p := range t.peers {
		p.attempt = 0
		p.failed = false
		p.history = nil
		if p.gaveUp && t.needsConnLocked(p) {
			p.gaveUp = false
			t.ensureConnectorLocked(p)
		}
		poke(p.wake)
	}
	t.mu.Unlock()
	for _, r := range t.relays {
		poke(r.poke)
	}
}

func (t *Transport) onWake(gap time.Duration) {
	t.log.Info("wake from sleep detected: resetting backoffs", "gap", gap)
	t.ResetBackoffs()
	t.events.push(WakeDetected{Gap: gap})
}

// livenessLoop pings every peer with a channel each LivenessInterval; a
// failed ping closes that connection, so its channel fails and is
// reconnected if there is something to deliver. Nothing new is written on
// the `whatever` stream.
func (t *Transport) livenessLoop() {
	ticker := time.NewTicker(t.opts.LivenessInterval)
	defer ticker.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-ticker.C:
		}
		t.mu.Lock()
		var chans []*channel
		for _, p := range t.peers {
			if p.ch != nil {
				chans = append(chans, p.ch)
			}
		}
		t.mu.Unlock()
		var round sync.WaitGroup
		for _, ch := range chans {
			round.Add(1)
			go func() {
				defer round.Done()
				t.checkLiveness(ch)
			}()
		}
		round.Wait()
	}
}

func (t *Transport) checkLiveness(ch *channel) {
	ctx, cancel := context.WithTimeout(t.ctx, t.opts.LivenessTimeout)
	defer cancel()
	res, ok := <-ping.Ping(network.WithNoDial(network.WithAllowLimitedConn(ctx, "ocapnet-liveness"), "liveness"), t.h, ch.p.id)
	if ok && res.Error == nil {
		return
	}
	if t.ctx.Err() != nil {
		return
	}
	err := errors.New("liveness check timed out")
	if ok && res.Error != nil {
		err = fmt.Errorf("liveness check failed: %w", res.Error)
	}
	t.log.Info("peer unresponsive: closing its connection", "peer", ch.p.id, "err", err)
	_ = ch.s.Conn().Close()
	t.channelFailed(ch, err)
}

// cleanupLoop forgets peers that have been idle (no channel, queue, pin,
// dial or close flag) for StalePeerTimeout, so state cannot grow without
// bound. It never touches a peer with anything in progress.
func (t *Transport) cleanupLoop() {
	ticker := time.NewTicker(t.opts.CleanupInterval)
	defer ticker.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-ticker.C:
		}
		now := t.opts.Now()
		t.mu.Lock()
		for id, p := range t.peers {
			if p.ch == nil && !p.dialing && len(p.queue) == 0 && !p.pinned && !p.wantDial && !p.closed &&
				!p.closedByPeer && p.gate == 0 && now.Sub(p.lastActive) > t.opts.StalePeerTimeout {
				delete(t.peers, id)
			}
		}
		t.mu.Unlock()
	}
}

// watchConnectedness forwards relay disconnections to their keepers.
func (t *Transport) watchConnectedness(sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-t.ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			ev := e.(event.EvtPeerConnectednessChanged)
			if ev.Connectedness == network.Connected || ev.Connectedness == network.Limited {
				continue
			}
			for _, r := range t.relays {
				if r.info.ID == ev.Peer {
					poke(r.poke)
				}
			}
		}
	}
}

// relayState is the reservation keeper of one relay.
type relayState struct {
	info peer.AddrInfo
	poke chan struct{}

	mu     sync.Mutex
	status RelayStatus
}

// RelayStatus is the state of the reservation on one configured relay.
type RelayStatus struct {
	Relay     peer.ID
	Reserved  bool
	Expires   time.Time
	Attempt   int
	NextTry   time.Time
	LastError string
}

// Relays returns the reservation state of every configured relay.
func (t *Transport) Relays() []RelayStatus {
	out := make([]RelayStatus, 0, len(t.relays))
	for _, r := range t.relays {
		r.mu.Lock()
		s := r.status
		r.mu.Unlock()
		s.Relay = r.info.ID
		out = append(out, s)
	}
	return out
}

// keepRelay holds a reservation on one relay: it reserves right at start,
// renews before expiry and whenever the relay disconnects, and re-dials a
// lost or unreachable relay with backoff forever (upstream gives up after 10
// tries, W19).
func (t *Transport) keepRelay(r *relayState) {
	policy := backoff.Policy{Base: t.opts.RelayRedialBase, Max: t.opts.RelayRedialMax}
	attempt := 0
	for t.ctx.Err() == nil {
		if sw, ok := t.h.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(r.info.ID)
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.opts.DialTimeout)
		res, err := client.Reserve(ctx, t.h, r.info)
		cancel()
		var wait time.Duration
		r.mu.Lock()
		if err == nil {
			attempt = 0
			r.status = RelayStatus{Reserved: true, Expires: res.Expiration}
			wait = max(time.Until(res.Expiration)*3/4, time.Second)
			t.log.Info("relay reservation", "relay", r.info.ID, "expires", res.Expiration)
		} else {
			attempt++
			wait = policy.Delay(attempt)
			r.status = RelayStatus{Attempt: attempt, NextTry: time.Now().Add(wait), LastError: err.Error()}
			if t.ctx.Err() == nil {
				t.log.Info("relay reservation failed", "relay", r.info.ID, "attempt", attempt, "err", err)
			}
		}
		r.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-t.ctx.Done():
		case <-r.poke: // disconnected or woke up: renew or re-dial now
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Stop stops the transport: it cancels every wait, dial and loop, closes the
// channels gracefully, returns every queued message in GaveUp events
// (ErrStopped), stops the libp2p host and waits for all its goroutines and
// the delivery of all events. It is idempotent and safe to call concurrently
// with sends, which then fail with ErrStopped.
func (t *Transport) Stop(ctx context.Context) error {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		select {
		case <-t.stopDone:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t.stopped = true
	t.cancel()
	var chans []*channel
	for _, p := range t.peers {
		if p.ch != nil {
			chans = append(chans, p.ch)
		}
	}
	t.mu.Unlock()
	for _, ch := range chans {
		_ = ch.s.Close()
	}
	err := t.h.Close()
	waited := make(chan struct{})
	go func() { t.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		return fmt.Errorf("transport: stop: %w", ctx.Err())
	}
	t.mu.Lock()
	for _, p := range t.peers {
		p.ch = nil
		if len(p.queue) > 0 {
			t.takeQueueLocked(p, fmt.Errorf("messages queued for %s: %w", p.id, ErrStopped))
		}
	}
	t.channels = 0
	t.mu.Unlock()
	t.events.close()
	close(t.stopDone)
	t.log.Info("transport stopped", "peer", t.self)
	return err
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
