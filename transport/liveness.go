package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-yamux/v5"
	msmux "github.com/multiformats/go-multistream"

	"github.com/ocapnet/ocapnet/internal/p2phost"
)

// maxProbesInFlight bounds the liveness probes running at once. Probes are
// spread over the interval (each channel has its own timer and phase, with
// jitter), so at 2,000 channels and the default 10 s interval about 200
// start per second; the bound only matters when many probes hang until
// their timeout.
const maxProbesInFlight = 64

// ResetBackoffs resets every peer's backoff and failure state and cuts every
// backoff wait in progress short, so reconnection starts at once; a peer
// that gave up is dialled again if something needs it. The wake detector
// calls it.
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
	t.events.Push(WakeDetected{Gap: gap})
}

// jitteredInterval is LivenessInterval ± 10 %.
func (t *Transport) jitteredInterval() time.Duration {
	d := t.opts.LivenessInterval
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// probeRetry is how soon a probe deferred by the in-flight bound, or refused
// by a local limit, is tried again.
func (t *Transport) probeRetry() time.Duration {
	return max(t.opts.LivenessInterval/20, 10*time.Millisecond)
}

// scheduleProbesLocked starts ch's liveness probes: each channel has its own
// timer, first at a random phase of the interval (so that channels
// registered together are not probed together), then every interval ± 10 %.
// An idle node therefore does no work between probes: no loop scans the
// channels. Caller holds mu.
func (t *Transport) scheduleProbesLocked(ch *channel) {
	if t.opts.LivenessInterval <= 0 {
		return
	}
	first := time.Duration(rand.Int64N(int64(t.opts.LivenessInterval) + 1))
	ch.probeTimer = time.AfterFunc(t.slotted(first), func() { t.probeDue(ch) })
}

// slotted rounds a probe delay up to the next probe slot (a hundredth of
// the interval, at least 10 ms, at most 100 ms, aligned on the wall
// clock): probes still spread over the whole interval, but those due in
// one slot run together, so an idle process wakes up a few times a second
// rather than once per probe (the wake-ups, not the pings, were a third of
// the idle CPU at 2,000 channels).
func (t *Transport) slotted(d time.Duration) time.Duration {
	slot := min(max(t.opts.LivenessInterval/100, 10*time.Millisecond), 100*time.Millisecond)
	now := time.Now().UnixNano()
	at := now + int64(d)
	at += int64(slot) - at%int64(slot)
	return time.Duration(at - now)
}

// stopProbesLocked stops ch's liveness timer (ch is no longer registered).
// Caller holds mu.
func stopProbesLocked(ch *channel) {
	if ch.probeTimer != nil {
		ch.probeTimer.Stop()
	}
}

// probeDue runs on ch's liveness timer: it probes the connection, with at
// most maxProbesInFlight probes at once (a probe over the bound is deferred
// by probeRetry), unless ch is no longer the peer's channel. A connection
// that received bytes from the peer within the interval (frames, acks, the
// peer's own pings) has shown it is alive: its probe is not sent, and the
// next check is due one interval after what was heard, so evidence of life
// is still at most an interval old when a probe is skipped.
func (t *Transport) probeDue(ch *channel) {
	t.mu.Lock()
	if ch.p.ch != ch || !t.enterLocked() {
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	defer t.wg.Done()
	if quiet, ok := heardSince(ch); ok {
		if next := t.jitteredInterval() - quiet; next > t.probeRetry() {
			t.metrics.probesHeard.Inc()
			t.rescheduleProbe(ch, next)
			return
		}
	}
	select {
	case t.probes <- struct{}{}:
	default:
		t.metrics.probesDeferred.Inc()
		t.rescheduleProbe(ch, t.probeRetry())
		return
	}
	defer func() { <-t.probes }()
	t.probe(ch)
}

// heardSince is how long ago ch's connection last received bytes from the
// peer, when its muxer keeps a read clock (the yamux connections of
// p2phost's hosts).
func heardSince(ch *channel) (time.Duration, bool) {
	var rc *p2phost.ReadClock
	if !ch.s.Conn().As(&rc) {
		return 0, false
	}
	return rc.Since(), true
}

// rescheduleProbe arms ch's timer again if ch is still registered.
func (t *Transport) rescheduleProbe(ch *channel, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch.p.ch == ch && !t.stopped {
		ch.probeTimer.Reset(t.slotted(d))
	}
}

// probe checks ch's connection once and schedules the next check. A probe
// that gets no answer within LivenessTimeout closes the connection, so its
// channel fails and is reconnected if something needs the peer. Nothing
// new is written on the `whatever` stream.
func (t *Transport) probe(ch *channel) {
	ctx, cancel := context.WithTimeout(t.ctx, t.opts.LivenessTimeout)
	defer cancel()
	err := t.ping(ctx, ch)
	t.metrics.probes.Inc()
	next := t.jitteredInterval()
	verdict := probeVerdict(err)
	switch verdict {
	case probeLocalLimit:
		// Our own resource limits refused the probe: no evidence about the
		// peer. Try again soon.
		t.metrics.probesLocal.Inc()
		t.sum.Warn("probe-local-limit", "liveness probe refused by a local resource limit; not counted against the peer", "peer", ch.p.id, "err", err)
		next = t.probeRetry()
	case probeAnswered:
		if err != nil {
			t.sum.Info("probe-answered", "liveness probe failed but the peer answered: alive", "peer", ch.p.id, "err", err)
		}
	}
	if verdict != probeDead || t.ctx.Err() != nil {
		t.rescheduleProbe(ch, next)
		return
	}
	t.metrics.probesFailed.Inc()
	t.sum.Info("unresponsive", "peer unresponsive: closing its connection", "peer", ch.p.id, "err", err)
	_ = ch.s.Conn().Close()
	t.channelFailed(ch, err)
}

// ping checks ch's connection once. Over a yamux connection (TCP,
// WebSocket, relayed circuits: what JavaScript kernels use) it sends one
// yamux ping frame, which the peer's muxer answers: no stream is opened, so
// a probe costs two 12-byte frames and no protocol negotiation, resource
// scope or handler on either side (a libp2p ping opens a stream, negotiates
// /ipfs/ping/1.0.0 and exchanges 32 random bytes each way: five times the
// CPU). Other connections (QUIC) use libp2p ping.
func (t *Transport) ping(ctx context.Context, ch *channel) error {
	var sess *yamux.Session
	if ch.s.Conn().As(&sess) {
		done := make(chan error, 1)
		t.wg.Add(1) // safe: the caller is counted; Stop closes the host, which ends the ping
		go func() {
			defer t.wg.Done()
			_, err := sess.Ping()
			done <- err
		}()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("liveness check timed out: %w", ctx.Err())
		}
	}
	res, ok := <-ping.Ping(network.WithNoDial(network.WithAllowLimitedConn(ctx, "ocapnet-liveness"), "liveness"), t.h, ch.p.id)
	switch {
	case ok && res.Error == nil:
		return nil
	case !ok:
		return errors.New("liveness check timed out")
	}
	return res.Error
}

type verdict int

const (
	probeAnswered   verdict = iota // a pong, or an answer that was not one (a reset, a refusal): the peer is there
	probeLocalLimit                // our own limits refused to open the probe
	probeDead                      // no answer in time, or the connection is gone
)

// probeVerdict reads a ping error. Only silence and a dead connection are
// evidence against the peer; a local resource-limit refusal is ours, and a
// stream reset or an unsupported protocol is an answer.
func probeVerdict(err error) verdict {
	switch {
	case err == nil:
		return probeAnswered
	case p2phost.Limit(err) == p2phost.LocalLimit, errors.Is(err, network.ErrResourceScopeClosed):
		return probeLocalLimit
	case p2phost.Limit(err) == p2phost.RemoteLimit:
		return probeAnswered // the peer refused for its own limits: it is there
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return probeDead
	case errors.Is(err, network.ErrReset), errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}):
		return probeAnswered
	}
	return probeDead
}

// cleanupLoop forgets peers that have been idle (no channel, pin, waiting
// Send, dial or close flag) for StalePeerTimeout, so state cannot grow
// without bound. It never touches a peer with anything in progress.
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
			if t.idleLocked(p) && now.Sub(p.lastActive) > t.opts.StalePeerTimeout {
				delete(t.peers, id)
			}
		}
		t.mu.Unlock()
	}
}

// idleLocked reports whether p has nothing in progress: no channel, pin,
// waiting Send, dial, gate or close flag.
func (t *Transport) idleLocked(p *peerState) bool {
	return p.ch == nil && !p.dialing && !t.needsConnLocked(p) && !p.closed && !p.closedByPeer && p.gate == 0
}
