package transport

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ocapnet/ocapnet/wire"
)

// failedRetryAttempt is an attempt number whose backoff ceiling is the cap:
// a failed peer is retried at the cap.
const failedRetryAttempt = 1 << 20

// connect is p's connector: it dials until a channel is registered, nothing
// needs one any more, the transport stops, or it gives up.
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
			reason := fmt.Errorf("%w after %d attempts: %s", ErrRetriesExhausted, p.attempt, p.lastErr)
			t.mu.Unlock()
			t.giveUp(p, reason)
			return
		}
		p.attempt++
		attempt := p.attempt
		var wait time.Duration
		switch {
		case p.failed && attempt > 1:
			wait = t.policy.Delay(failedRetryAttempt)
		case attempt > 1:
			wait = t.policy.Delay(attempt - 1)
		}
		// A JavaScript peer's pacing is not cut short by pokes: a
		// registration's poke may still be in the wake channel.
		pace := t.legacyDialWaitLocked(p)
		wait = max(wait, pace)
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

		if pace > 0 {
			timer := time.NewTimer(pace)
			select {
			case <-t.ctx.Done():
			case <-timer.C:
			}
			timer.Stop()
			wait -= pace
		}
		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-t.ctx.Done():
			case <-p.wake:
			case <-timer.C:
			}
			timer.Stop()
		}
		if t.ctx.Err() != nil {
			continue // the loop top sees stopped
		}
		t.log.Debug("dialing", "peer", p.id, "attempt", attempt)
		registered, err := t.dial(p)
		if err == nil && registered {
			return // register cleared dialing
		}
		if err == nil {
			continue // our channel lost to the peer's: the loop top sees it
		}
		t.dialFailed(p, attempt, err)
		if t.ctx.Err() == nil && isFatal(err) {
			return
		}
	}
}

// dialFailed records a failed attempt: the error, the failure history and
// the permanent-failure heuristic; a fatal error ends the session.
func (t *Transport) dialFailed(p *peerState, attempt int, err error) {
	class, code := classify(err)
	t.mu.Lock()
	p.lastErr = err.Error()
	if class == classFatal {
		stopped := t.stopped
		t.mu.Unlock()
		if !stopped {
			t.log.Warn("giving up on peer: error is not retryable", "peer", p.id, "err", err)
			t.giveUp(p, err)
		}
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

func isFatal(err error) bool {
	class, _ := classify(err)
	return class == classFatal
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

// giveUp stops trying to reach p (MaxRetryAttempts, or an error that is not
// retryable) and tells the layer above. A channel registered meanwhile wins:
// then nothing is given up.
func (t *Transport) giveUp(p *peerState, reason error) {
	p.linkMu.Lock()
	defer p.linkMu.Unlock()
	t.mu.Lock()
	p.dialing = false
	if t.stopped || p.ch != nil || p.closed || p.closedByPeer {
		t.mu.Unlock()
		return
	}
	p.gaveUp = true
	p.wantDial = false
	t.metrics.giveUps.WithLabelValues(reasonLabel(reason)).Inc()
	t.setStateLocked(p, StateGaveUp)
	p.signalLocked()
	t.mu.Unlock()
	if t.handler.OnLinkEnded != nil {
		t.handler.OnLinkEnded(p.id, reason)
	}
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

// dial opens and handshakes a stream to p and registers it as a channel.
// registered is false when the new channel lost to one the peer opened at
// the same time (see keepNew); the peer's then serves.
func (t *Transport) dial(p *peerState) (registered bool, err error) {
	if err := t.admit(p.id, true); err != nil {
		return false, fmt.Errorf("dial %s: %w", p.id, err)
	}
	t.mu.Lock()
	hints := slices.Clone(p.hints)
	p.lastDial = time.Now()
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
			return false, ErrStopped
		}
		return false, err
	}
	// Hold the peer's other channels' deliveries while our handshake runs:
	// the peer may already have registered this stream and written on it.
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
		return false, err
	}
	if err := t.afterHandshake(ch); err != nil {
		s.Reset()
		return false, err
	}
	p.linkMu.Lock()
	registered, err = t.register(ch)
	if err == nil && registered {
		t.notifyChannel(ch)
	}
	p.linkMu.Unlock()
	if err != nil {
		return false, err
	}
	t.startReader(ch)
	if !registered {
		closeWrite(ch.s) // we never write on a losing channel; the peer drains it
	}
	return registered, nil
}
