package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/wire"
)

// closeSignalWait bounds the close signal exchange.
const closeSignalWait = 2 * time.Second

// Close closes the link to p on purpose. When it returns: sends to p are
// refused with ErrIntentionallyClosed (until Reconnect), reconnection has
// stopped, any write in progress has ended, the channel is detached, and
// Handler.OnLinkEnded has returned. Inbound channels from p are refused from
// then on, and an ocapnet peer is told (it then reports StateClosedByPeer
// and stops reconnecting to us).
func (t *Transport) Close(id peer.ID) error {
	p := t.peer(id)
	if p == nil {
		return ErrStopped
	}
	p.linkMu.Lock()
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		p.linkMu.Unlock()
		return ErrStopped
	}
	if p.closed {
		t.mu.Unlock()
		p.linkMu.Unlock()
		return nil
	}
	p.closed, p.closedByPeer, p.wantDial = true, false, false
	p.redialLogged = false
	poke(p.wake)
	t.setStateLocked(p, StateClosed)
	p.signalLocked()
	t.mu.Unlock()

	// Wait for a write in progress: when Close returns, nothing more is
	// written to the peer.
	p.sendSem <- struct{}{}
	t.mu.Lock()
	ch := t.detachLocked(p)
	t.metrics.giveUps.WithLabelValues("closed").Inc()
	t.mu.Unlock()
	<-p.sendSem
	if t.handler.OnLinkEnded != nil {
		t.handler.OnLinkEnded(id, fmt.Errorf("link to %s closed: %w", id, ErrIntentionallyClosed))
	}
	p.linkMu.Unlock()
	if ch != nil {
		if slices.Contains(ch.features, wire.FeatureClose) {
			t.signalClose(id)
		}
		ch.s.Close()
	}
	return nil
}

// signalClose tells an ocapnet peer that we closed the link on purpose: one
// Close frame on a ControlProtocolID stream over the existing connection,
// then at most closeSignalWait for its CloseAck (docs/PROTOCOL.md).
func (t *Transport) signalClose(id peer.ID) {
	ctx, cancel := context.WithTimeout(t.ctx, closeSignalWait)
	defer cancel()
	ctx = network.WithNoDial(network.WithAllowLimitedConn(ctx, "ocapnet-close"), "close signal")
	s, err := t.h.NewStream(ctx, id, wire.ControlProtocolID)
	if err != nil {
		t.log.Debug("close signal not sent", "peer", id, "err", err)
		return
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(closeSignalWait))
	if err := wire.WriteFrame(s, wire.EncodeControl(wire.ControlClose)); err != nil {
		return
	}
	_ = s.CloseWrite()
	frame, err := wire.NewReader(s, wire.MaxControlFrame).ReadFrame()
	if err == nil {
		var c wire.Control
		if c, err = wire.DecodeControl(frame); err == nil && c != wire.ControlCloseAck {
			err = fmt.Errorf("got control frame %d, want closeAck", c)
		}
	}
	if err != nil {
		t.log.Debug("no closeAck", "peer", id, "err", err)
	}
}

// handleControl serves ControlProtocolID: the peer closed the link on
// purpose.
func (t *Transport) handleControl(s network.Stream) {
	t.mu.Lock()
	if !t.enterLocked() {
		t.mu.Unlock()
		s.Reset()
		return
	}
	t.mu.Unlock()
	defer t.wg.Done()
	defer s.Close()
	id := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(closeSignalWait))
	frame, err := wire.NewReader(s, wire.MaxControlFrame).ReadFrame()
	if err == nil {
		var c wire.Control
		if c, err = wire.DecodeControl(frame); err == nil && c != wire.ControlClose {
			err = fmt.Errorf("got control frame %d, want close", c)
		}
	}
	if err != nil {
		t.sum.Info("control-malformed", "ignoring malformed control message", "peer", id, "err", err)
		s.Reset()
		return
	}
	p := t.peer(id)
	if p == nil {
		return
	}
	p.linkMu.Lock()
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		p.linkMu.Unlock()
		return
	}
	p.closedByPeer, p.wantDial = true, false
	poke(p.wake)
	t.setStateLocked(p, StateClosedByPeer)
	p.signalLocked()
	t.mu.Unlock()
	p.sendSem <- struct{}{}
	t.mu.Lock()
	// The link is over: forget the channel now rather than when the
	// closer's FIN arrives, so that state and channel agree at once.
	ch := t.detachLocked(p)
	t.metrics.giveUps.WithLabelValues("closed-by-peer").Inc()
	t.mu.Unlock()
	<-p.sendSem
	t.log.Info("peer closed the link on purpose", "peer", id)
	if t.handler.OnLinkEnded != nil {
		t.handler.OnLinkEnded(id, fmt.Errorf("link closed by %s: %w", id, ErrClosedByPeer))
	}
	p.linkMu.Unlock()
	_ = wire.WriteFrame(s, wire.EncodeControl(wire.ControlCloseAck))
	if ch != nil {
		_ = ch.s.Close()
	}
}

// Reconnect clears a Close, a closed-by-peer, failed or given-up state,
// merges hints, and connects to p now (cutting any backoff wait short).
// When it returns, sends are admitted again and a connection attempt runs
// (unless a channel is open).
func (t *Transport) Reconnect(id peer.ID, hints ...string) error {
	if err := CheckHints(id, hints); err != nil {
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

// reasonLabel is the metrics label of a give-up's reason.
func reasonLabel(err error) string {
	if errors.Is(err, ErrRetriesExhausted) {
		return "retries-exhausted"
	}
	return "fatal"
}
