package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/wire"
)

// drainWait bounds how long a winning channel's deliveries wait for a
// replaced channel to be drained, on top of HandshakeTimeout.
const drainWait = 5 * time.Second

// ourFeatures are announced in every handshake.
var ourFeatures = []string{wire.FeatureClose}

// channel is one handshaken stream.
type channel struct {
	p           *peerState
	s           network.Stream
	r           *wire.Reader
	outbound    bool
	features    []string
	incarnation string
	loser       bool         // replaced by a simultaneous channel; read to its end (guarded by mu)
	lingering   bool         // a replaced channel of a legacy peer, kept open (legacy.go; guarded by mu)
	resetByUs   bool         // we reset it on purpose (legacy.go; guarded by mu)
	strayed     bool         // a stray handshake was seen on it (legacy.go; guarded by mu)
	gen         uint64       // generation, unique per transport, set when registered (guarded by mu)
	probeTimer  *time.Timer  // fires the next liveness probe (liveness.go; guarded by mu)
	lastUse     atomic.Int64 // unix nanoseconds of the last frame read or written

	w             io.Writer // where frames are written: s (a test may wrap it); guarded by the peer's send semaphore
	writeDeadline time.Time // guarded by the peer's send semaphore
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
	return &channel{p: p, s: s, w: s, r: r, outbound: true, features: ack.Features, incarnation: ack.IncarnationID}, nil
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}

// afterHandshake tells the layer above the peer's incarnation; it decides,
// from what it persisted, whether the peer restarted.
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
		t.log.Info("peer restarted", "peer", ch.p.id, "incarnation", ch.incarnation)
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
	if !slices.Contains(nw.features, wire.FeatureClose) || old.outbound == nw.outbound {
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

// register makes ch p's channel, or classifies it as a loser to be drained.
// It returns whether ch became p's channel. The caller holds p.linkMu and,
// when registered, calls notifyChannel before anything reads from ch.
func (t *Transport) register(ch *channel) (registered bool, err error) {
	p := ch.p
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		ch.s.Reset()
		return false, ErrStopped
	}
	if p.closed {
		ch.s.Reset()
		return false, fmt.Errorf("register %s: %w", p.id, ErrIntentionallyClosed)
	}
	t.gens++
	ch.gen = t.gens
	ch.lastUse.Store(time.Now().UnixNano())
	p.incarnation = ch.incarnation
	p.features = ch.features
	if p.closedByPeer && !ch.outbound {
		p.closedByPeer = false // the closer dialled us again
	}
	old := p.ch
	if old != nil && !t.keepNew(old, ch) {
		t.log.Debug("two channels to one peer: the new one loses", "peer", p.id, "newOutbound", ch.outbound, "new", ch.s.ID(), "old", old.s.ID())
		ch.loser = true
		t.gateCloseLocked(p)
		return false, nil
	}
	if old != nil {
		t.log.Debug("two channels to one peer: the new one replaces the old", "peer", p.id, "newOutbound", ch.outbound, "new", ch.s.ID(), "old", old.s.ID())
		if old.isLegacy() {
			t.lingerLocked(p, old)
		} else {
			old.loser = true
			t.gateCloseLocked(p)
		}
	} else {
		t.log.Debug("channel registered", "peer", p.id, "stream", ch.s.ID(), "outbound", ch.outbound, "gen", ch.gen)
		t.channels++
	}
	p.ch = ch
	if old != nil {
		stopProbesLocked(old)
	}
	t.scheduleProbesLocked(ch)
	if ch.outbound {
		p.dialing = false // the connector's dial ends here
	}
	p.wantDial = false
	p.gaveUp = false
	p.attempt = 0
	p.failed = false
	p.history = nil
	p.lastErr = ""
	p.lastActive = t.opts.Now()
	t.setStateLocked(p, StateConnected)
	p.signalLocked()
	poke(p.wake)
	t.h.ConnManager().Protect(p.id, "ocapnet-channel")
	if old != nil && !old.lingering {
		// Stop writing to the replaced channel once any write in progress
		// ends; its reader keeps delivering until the peer's end closes.
		// (Every registered channel has its handshake done: an inbound one
		// is acknowledged before its registration ends, see acceptInbound.)
		t.goTracked(func() {
			p.sendSem <- struct{}{}
			closeWrite(old.s)
			<-p.sendSem
		})
	}
	return true, nil
}

// notifyChannel tells the layer above of a registered channel. The caller
// holds p.linkMu.
func (t *Transport) notifyChannel(ch *channel) {
	if t.handler.OnChannel != nil {
		t.handler.OnChannel(ch.p.id, ch.gen)
	}
}

// startReader runs an outbound channel's read loop in a new goroutine (an
// inbound channel's is run by its stream handler).
func (t *Transport) startReader(ch *channel) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		ch.s.Reset()
		return
	}
	t.goTracked(func() { t.readLoop(ch) })
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
			t.sum.Warn("drain-timeout", "delivering without waiting for a replaced channel to drain", "peer", p.id)
			return
		case <-t.ctx.Done():
			return
		}
	}
}

// readLoop reads frames from ch and hands them to OnMessage, one at a time,
// after the peer's inbound rate limiter allows (pausing reads, never
// dropping). A replaced channel's loop first lets its replacement wait until
// it is drained, so that frames are delivered in the order they were written.
//
// The per-frame work is kept small: the limiter is charged for a batch of
// frames at once (inboundCredit, at most a tenth of the burst, so pacing is
// unchanged), and the channel's last use and the received counters are
// updated when the read buffer is drained or a batch is charged, not per
// frame.
func (t *Transport) readLoop(ch *channel) {
	p := ch.p
	chunk := max(1, min(t.opts.InboundBurst/10, inboundCredit))
	credit, frames, bytes := 0, 0, 0
	publish := func() {
		ch.lastUse.Store(time.Now().UnixNano())
		t.metrics.msgsIn.Add(float64(frames))
		t.metrics.bytesIn.Add(float64(bytes))
		frames, bytes = 0, 0
	}
	for {
		frame, err := ch.r.ReadFrame()
		if err != nil {
			if frames > 0 {
				publish()
			}
			t.readEnded(ch, err)
			return
		}
		if strayHandshake(ch, frame) {
			t.metrics.strayHandshakes.Inc()
			t.mu.Lock()
			t.strayHandshakeSeenLocked(ch)
			t.mu.Unlock()
			continue
		}
		if p.gateN.Load() != 0 {
			t.waitGate(ch)
		}
		if credit == 0 {
			if !p.limiter.AllowN(time.Now(), chunk) {
				if err := p.limiter.WaitN(t.ctx, chunk); err != nil {
					t.readEnded(ch, ErrStopped)
					return
				}
			}
			credit = chunk
		}
		credit--
		frames++
		bytes += len(frame)
		if credit == 0 || ch.r.Buffered() == 0 {
			publish()
		}
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

// inboundCredit is the most inbound frames charged to a peer's rate limiter
// at once.
const inboundCredit = 256

// readEnded handles the end of ch's read loop (in the loop's goroutine).
func (t *Transport) readEnded(ch *channel, err error) {
	p := ch.p
	ch.r.Close()
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrPrefixTooLong):
		t.metrics.oversize.Inc()
		t.sum.Warn("oversize-frame", "closing channel: oversize inbound frame", "peer", p.id, "err", err)
	case err == io.EOF:
		t.log.Debug("channel closed by peer", "peer", p.id)
	default:
		t.log.Debug("channel read ended", "peer", p.id, "err", err)
	}
	t.mu.Lock()
	t.log.Debug("read loop ended", "peer", p.id, "stream", ch.s.ID(), "loser", ch.loser, "err", err)
	if ch.lingering {
		p.unlingerLocked(ch)
		if !ch.resetByUs {
			t.promptLocked(p)
		}
		t.mu.Unlock()
		t.closeAfterWrite(ch)
		return
	}
	if ch.loser {
		t.gateReleaseLocked(p)
		t.mu.Unlock()
		t.closeAfterWrite(ch)
		return
	}
	prompt := p.ch == ch && ch.isLegacy() && !ch.resetByUs
	if err == io.EOF {
		// The peer closed its side cleanly. Close ours gracefully too
		// (no reset): frames we already wrote must still reach it, for
		// example when it stopped writing on a stream that lost a
		// simultaneous dial before we learnt of the winner.
		t.forgetChannelLocked(ch, fmt.Errorf("channel to %s closed by the peer", p.id))
		if prompt {
			t.promptLocked(p)
		}
		t.mu.Unlock()
		t.closeAfterWrite(ch)
		return
	}
	t.forgetChannelLocked(ch, err)
	if prompt {
		t.promptLocked(p)
	}
	t.mu.Unlock()
	_ = ch.s.Reset()
}

// closeAfterWrite closes ch's stream once a write in progress has ended,
// in a goroutine of its own. The peer still reads a stream whose read side
// ended (a replaced or losing channel is drained to its end), so a Send that
// took ch just before it was replaced or forgotten completes there, instead
// of failing on our own close; later Sends use the next channel.
func (t *Transport) closeAfterWrite(ch *channel) {
	t.goTracked(func() {
		ch.p.sendSem <- struct{}{}
		_ = ch.s.Close()
		<-ch.p.sendSem
	})
}

// channelFailed forgets ch (if it is still p's channel: a replaced channel
// never tears down its successor, W9) and resets its stream.
func (t *Transport) channelFailed(ch *channel, err error) {
	_ = ch.s.Reset()
	t.mu.Lock()
	t.forgetChannelLocked(ch, err)
	t.mu.Unlock()
}

// forgetChannelLocked unregisters ch if it is p's channel and starts a
// reconnection when something needs the peer.
func (t *Transport) forgetChannelLocked(ch *channel, err error) {
	p := ch.p
	if p.ch != ch {
		return
	}
	t.detachLocked(p)
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
	t.maybeForgetLocked(p)
}

// detachLocked unregisters p's channel (the caller closes its stream).
func (t *Transport) detachLocked(p *peerState) *channel {
	ch := p.ch
	if ch == nil {
		return nil
	}
	p.ch = nil
	stopProbesLocked(ch)
	p.lastActive = t.opts.Now()
	t.channels--
	t.h.ConnManager().Unprotect(p.id, "ocapnet-channel")
	p.signalLocked()
	return ch
}

// handleStream accepts an inbound `whatever` stream: handshake, then the
// read loop runs in this (libp2p's) goroutine.
func (t *Transport) handleStream(s network.Stream) {
	t.mu.Lock()
	if !t.enterLocked() {
		t.mu.Unlock()
		s.Reset()
		return
	}
	t.mu.Unlock()
	defer t.wg.Done()

	id := s.Conn().RemotePeer()
	if t.refuseClosedLegacy(s, id) {
		return
	}
	// Bound the work an identity that has proven nothing can cause: the
	// per-address rate, the handshakes in flight, and a slot.
	if !t.limits.allow(s.Conn().RemoteMultiaddr()) {
		t.metrics.rateRefused.Inc()
		t.sum.Info("handshake-rate", "refusing an inbound stream: too many from its address", "peer", id, "addr", s.Conn().RemoteMultiaddr())
		s.Reset()
		return
	}
	select {
	case t.handshakes <- struct{}{}:
	default:
		t.metrics.rateRefused.Inc()
		t.sum.Info("handshakes-busy", "refusing an inbound stream: too many handshakes in progress", "peer", id, "limit", t.opts.MaxPendingHandshakes)
		s.Reset()
		return
	}
	held := true
	release := func() {
		if held {
			held = false
			<-t.handshakes
		}
	}
	defer release()
	if err := t.admit(id, false); err != nil {
		t.sum.Warn("connection-limit", "refusing inbound channel", "peer", id, "err", err)
		s.Reset()
		return
	}
	_ = s.SetDeadline(time.Now().Add(t.opts.HandshakeTimeout))
	r := wire.NewReader(s, t.opts.MaxMessageSize)
	frame, err := r.ReadFrame()
	if err != nil {
		t.metrics.handshakeFailures.Inc()
		t.sum.Info("inbound-handshake", "inbound handshake failed", "peer", id, "err", err)
		s.Reset()
		return
	}
	hs, err := wire.DecodeHandshake(frame)
	if err != nil || hs.Ack {
		t.metrics.handshakeFailures.Inc()
		t.sum.Info("inbound-handshake", "inbound handshake failed", "peer", id, "err", errOr(err, "got handshakeAck"))
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
		if slices.Contains(hs.Features, wire.FeatureClose) {
			t.signalClose(id)
		} else {
			t.closedRedialRefused(p) // first contact since our start: found by its handshake
		}
		return
	}
	t.mu.Unlock()
	ch := &channel{p: p, s: s, w: s, r: r, features: hs.Features, incarnation: hs.IncarnationID}
	if err := t.afterHandshake(ch); err != nil {
		t.sum.Info("inbound-rejected", "inbound channel rejected", "peer", id, "err", err)
		s.Reset()
		return
	}
	if !t.acceptInbound(ch) {
		return
	}
	release()
	t.readLoop(ch)
}

// acceptInbound registers an inbound channel and acknowledges its
// handshake. It registers (deciding which of two simultaneous channels
// survives) before acknowledging: the dialler writes as soon as it has our
// ack, and its frames must find the channel already classified, or frames of
// the two channels could be delivered out of order. No writer may use the
// channel before the ack is written, so the peer's send semaphore is held
// from registration to the ack. It returns false, with the stream reset,
// if the channel cannot be used.
func (t *Transport) acceptInbound(ch *channel) bool {
	p := ch.p
	p.linkMu.Lock()
	defer p.linkMu.Unlock()
	p.sendSem <- struct{}{}
	registered, err := t.register(ch)
	if err != nil {
		<-p.sendSem
		return false
	}
	ack := wire.EncodeHandshake(wire.Handshake{Ack: true, IncarnationID: t.opts.IncarnationID, Features: ourFeatures})
	werr := wire.WriteFrame(ch.s, ack)
	<-p.sendSem
	if werr != nil {
		t.metrics.handshakeFailures.Inc()
		t.sum.Info("inbound-handshake", "inbound handshake failed: writing handshakeAck", "peer", p.id, "err", werr)
		t.mu.Lock()
		if ch.loser {
			t.gateReleaseLocked(p)
		} else {
			t.forgetChannelLocked(ch, werr)
		}
		t.mu.Unlock()
		_ = ch.s.Reset()
		return false
	}
	_ = ch.s.SetDeadline(time.Time{})
	if registered {
		t.notifyChannel(ch)
	} else {
		closeWrite(ch.s) // we never write on a losing channel; the peer drains it
	}
	return true
}
