package transport

import (
	"bytes"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/wire"
)

// Channels to peers that do not announce wire.FeatureClose: JavaScript
// kernels (docs/PROTOCOL.md "Living with the JavaScript transport"). Their
// transport has weaknesses we must not trigger (reference §10):
//
//   - W9: when any of its read loops ends (the stream was closed, reset or
//     half-closed by us, or aborted after its inactivity timeout), it forgets
//     whatever channel is registered, without closing it, and can then no
//     longer write to us until it dials again;
//   - §5.8: its dials are limited to 10 a minute per peer, so after a few
//     losses it cannot dial again for up to a minute, while its RemoteHandle
//     gives up on its window after 40 s;
//   - W8: when several sends find no channel, each runs a handshake on the
//     same stream; the extra handshakes time out and close that stream.
//
// So, toward such a peer: a replaced channel is never closed or half-closed
// by us (it lingers, read but never written, until the peer ends it or we
// dial again); stray handshake frames on an established stream are dropped
// quietly; and whenever one of its streams ends (not by our doing), the peer
// has forgotten its registered channel, even if that is the one we still
// write on. We then reset our streams to it at once (it can no longer write
// on them; their ends clear nothing more), let the peer settle for a
// quarter of LegacyDialInterval (at most 1 s), and give it a fresh channel
// ourselves: inbound streams are not rate limited on its side, and a stream
// we open carries exactly one handshake. Our dials to it are at most one per
// LegacyDialInterval.
const (
	// maxLingering bounds the replaced streams kept open per peer; past it
	// the oldest is reset.
	maxLingering = 2
	// legacyPromptWindow is how long, after one of its streams ended, a
	// JavaScript peer is dialled even though nothing else needs it.
	legacyPromptWindow = time.Minute
)

// isLegacy reports whether a channel's handshake lacked FeatureClose.
func (ch *channel) isLegacy() bool { return !slices.Contains(ch.features, wire.FeatureClose) }

// legacyPeerLocked reports whether p's last handshake lacked FeatureClose
// or, before any handshake in this run, whether the layer above said so
// (PromptLegacy).
func (p *peerState) legacyPeerLocked() bool {
	if p.incarnation == "" {
		return p.legacyRestored
	}
	return !slices.Contains(p.features, wire.FeatureClose)
}

// PromptLegacy tells the transport, at start, that id was a JavaScript peer
// (its last channel, in an earlier run, lacked FeatureClose) active shortly
// before: it may hold messages for us while its own dials are spent against
// us (§5.8: 10 a minute; a restart of ours costs it several), and its
// RemoteHandle gives up on them after 40 s. So we give it a channel
// ourselves (inbound streams are not rate limited on its side), with the
// legacy pacing, and keep trying for legacyPromptWindow even if nothing
// else needs it. Hints must be registered first.
func (t *Transport) PromptLegacy(id peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	p := t.peerLocked(id)
	if p.incarnation == "" {
		p.legacyRestored = true
	}
	if p.ch != nil || !p.legacyPeerLocked() {
		return
	}
	p.promptUntil = t.opts.Now().Add(legacyPromptWindow)
	t.metrics.legacyRefreshes.Inc()
	t.ensureConnectorLocked(p)
}

// lingerLocked keeps a replaced legacy channel open and read, but never
// written, and resets the oldest when more than maxLingering linger.
func (t *Transport) lingerLocked(p *peerState, old *channel) {
	old.loser = true
	old.lingering = true
	p.lingering = append(p.lingering, old)
	for len(p.lingering) > maxLingering {
		oldest := p.lingering[0]
		p.lingering = p.lingering[1:]
		oldest.resetByUs = true
		go oldest.s.Reset() // its read loop ends and cleans up
	}
}

// unlingerLocked removes ch from p's lingering streams.
func (p *peerState) unlingerLocked(ch *channel) {
	if i := slices.Index(p.lingering, ch); i >= 0 {
		p.lingering = slices.Delete(p.lingering, i, i+1)
	}
}

// promptLocked gives a fresh channel to a legacy peer one of whose streams
// ended (not by our doing), unless the link ended on purpose: our current
// and lingering streams are reset now, and the peer is dialled after it has
// settled (legacyDialWaitLocked), for legacyPromptWindow even if nothing
// else needs it. Caller holds mu.
func (t *Transport) promptLocked(p *peerState) {
	if t.stopped || p.closed || p.closedByPeer || !p.legacyPeerLocked() {
		return
	}
	now := time.Now()
	p.promptUntil = t.opts.Now().Add(legacyPromptWindow)
	p.settleUntil = now.Add(min(t.opts.LegacyDialInterval/4, time.Second))
	t.metrics.legacyRefreshes.Inc()
	old := p.lingering
	p.lingering = nil
	if ch := p.ch; ch != nil {
		t.detachLocked(p)
		p.lastErr = "the JavaScript peer forgot this channel (one of its streams ended, W9): replaced"
		old = append(old, ch)
	}
	for _, ch := range old {
		ch.resetByUs = true
		go ch.s.Reset()
	}
	t.ensureConnectorLocked(p)
}

// legacyDialWaitLocked is how long the connector waits before dialling a
// legacy peer, so that our dials reach it at most once per
// LegacyDialInterval (each new channel it registers costs it one of its own
// redials through W9).
func (t *Transport) legacyDialWaitLocked(p *peerState) time.Duration {
	if !p.legacyPeerLocked() {
		return 0
	}
	wait := time.Until(p.settleUntil)
	if !p.lastDial.IsZero() {
		wait = max(wait, time.Until(p.lastDial.Add(t.opts.LegacyDialInterval)))
	}
	return max(0, wait)
}

// strayHandshakeSeen handles the first stray handshake on one of a legacy
// peer's channels: the peer runs that handshake (and any others of its
// concurrent sends, W8) until its own handshake timeout, and when the last
// one fails it forgets its registered channel (§4.2 send path: a failed
// dial block calls handleConnectionLoss), which we cannot see. So we
// prompt a fresh channel once that time is over. Caller holds mu.
func (t *Transport) strayHandshakeSeenLocked(ch *channel) {
	p := ch.p
	if ch.strayed || t.stopped {
		return
	}
	ch.strayed = true
	if p.strayTimer != nil {
		p.strayTimer.Stop()
	}
	p.strayTimer = time.AfterFunc(t.opts.LegacyHandshakeTimeout, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.stopped {
			t.log.Debug("a JavaScript peer's extra handshakes have timed out: it forgot its channel; prompting a fresh one", "peer", p.id)
			t.promptLocked(p)
		}
	})
}

var handshakePrefix = []byte(`{"method":"handshake"`)

// strayHandshake reports whether frame, read on an established channel, is
// one of the extra handshakes a JavaScript peer writes when several of its
// sends share one dial (W8). It is dropped quietly: the peer's extra
// handshake reads time out on their own.
func strayHandshake(ch *channel, frame []byte) bool {
	if !ch.isLegacy() || !bytes.HasPrefix(frame, handshakePrefix) {
		return false
	}
	_, err := wire.DecodeHandshake(frame)
	return err == nil
}

// refuseClosedLegacy refuses, at once, an inbound stream from a JavaScript
// peer whose link we closed on purpose (Close). Such a peer cannot be told
// (its protocol has no close signal): it sees our end of the stream as a
// lost connection and redials for ever. Its redials are reset before any
// work is spent on them: no rate-limit slot, admission, handshake read or
// layer above; the connection itself stays (a redial is a new stream on it,
// not a new security handshake). Each is counted; the first after a Close
// is logged (docs/PROTOCOL.md §2a).
func (t *Transport) refuseClosedLegacy(s network.Stream, id peer.ID) bool {
	t.mu.Lock()
	p := t.peers[id]
	if p == nil || !p.closed || p.incarnation == "" || !p.legacyPeerLocked() {
		t.mu.Unlock()
		return false
	}
	t.mu.Unlock()
	s.Reset()
	t.closedRedialRefused(p)
	return true
}

// closedRedialRefused counts a refused redial of a closed JavaScript peer
// and logs the first one after the Close (rate limited across peers).
func (t *Transport) closedRedialRefused(p *peerState) {
	t.metrics.closedRedials.Inc()
	t.mu.Lock()
	first := !p.redialLogged
	p.redialLogged = true
	t.mu.Unlock()
	if first {
		t.sum.Info("closed-legacy-redial", "refusing the redials of a JavaScript peer whose link we closed (it cannot be told; each redial is reset at once and counted in ocapnet_transport_closed_redials_refused_total)", "peer", p.id)
	}
}
