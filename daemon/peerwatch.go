package daemon

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/transport"
)

// peerWatch follows every peer's reported link state: it coalesces repeated
// reports of one state (a reconnection attempt after another) into at most
// one event per interval, keeps when the peer entered its state (the
// transport restarts the clock on every attempt), and logs at WARN when a
// peer's link keeps failing.
type peerWatch struct {
	interval time.Duration // negative: no coalescing
	log      *slog.Logger

	mu    sync.Mutex
	peers map[peer.ID]*watched
}

type watched struct {
	state    string
	since    time.Time
	lastEmit time.Time
	pending  *peerEvent // the latest report not yet announced
	reports  int        // reports not yet announced, pending's included
	warned   bool       // a WARN was logged in this episode of trouble
}

// warnAttempt is the reconnection attempt at which a peer's trouble is
// logged at WARN (the first ones are routine after a lost connection).
const warnAttempt = 3

func newPeerWatch(interval time.Duration, log *slog.Logger) *peerWatch {
	return &peerWatch{interval: interval, log: log, peers: map[peer.ID]*watched{}}
}

// report takes one state report and returns the event to announce now, or
// nil when it is coalesced into a later one.
func (w *peerWatch) report(info transport.PeerInfo, now time.Time) *peerEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := info.State.String()
	x := w.peers[info.ID]
	if x == nil {
		x = &watched{}
		w.peers[info.ID] = x
	}
	ev := &peerEvent{Event: "peer", Peer: info.ID.String(), State: st, Attempt: info.Attempt, NextRetry: info.NextRetry,
		LastError: info.LastError, RemoteAddr: info.RemoteAddr}
	if x.state != st {
		x.state, x.since = st, info.Since
		if x.since.IsZero() {
			x.since = now
		}
		x.pending, x.reports, x.lastEmit = nil, 0, now
		ev.Since = x.since
		w.logChange(info, x)
		return ev
	}
	ev.Since = x.since
	x.reports++
	w.logRepeat(info, x)
	if w.interval < 0 || now.Sub(x.lastEmit) >= w.interval {
		return x.take(ev, now)
	}
	x.pending = ev
	return nil
}

func (x *watched) take(ev *peerEvent, now time.Time) *peerEvent {
	if x.reports > 1 {
		ev.Reports = x.reports
	}
	x.pending, x.reports, x.lastEmit = nil, 0, now
	return ev
}

// due returns the coalesced events whose interval has passed.
func (w *peerWatch) due(now time.Time) []*peerEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*peerEvent
	for _, x := range w.peers {
		if x.pending != nil && now.Sub(x.lastEmit) >= w.interval {
			out = append(out, x.take(x.pending, now))
		}
	}
	return out
}

// since returns when the peer entered state, as far as the daemon saw it.
func (w *peerWatch) since(id peer.ID, state string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if x := w.peers[id]; x != nil && x.state == state {
		return x.since, true
	}
	return time.Time{}, false
}

func (w *peerWatch) logChange(info transport.PeerInfo, x *watched) {
	switch info.State {
	case transport.StateConnected:
		if x.warned {
			w.log.Info("peer reachable again", "peer", info.ID, "remoteAddr", info.RemoteAddr)
		}
		x.warned = false
	case transport.StateFailed:
		x.warned = true
		w.log.Warn("peer unreachable for a long time: marked failed, still retried at the backoff cap; messages to it wait",
			"peer", info.ID, "attempt", info.Attempt, "err", oneLine(info.LastError))
	case transport.StateGaveUp:
		x.warned = true
		w.log.Warn("gave up reconnecting to peer; a send or reconnect starts again", "peer", info.ID, "attempt", info.Attempt,
			"err", oneLine(info.LastError))
	default:
		w.logRepeat(info, x)
	}
}

func (w *peerWatch) logRepeat(info transport.PeerInfo, x *watched) {
	if x.warned || info.State != transport.StateReconnecting || info.Attempt < warnAttempt {
		return
	}
	x.warned = true
	w.log.Warn("cannot reach peer; messages to it wait", "peer", info.ID, "attempt", info.Attempt,
		"nextRetry", info.NextRetry.Format(time.RFC3339), "err", oneLine(info.LastError))
}

// oneLine sums up an error on one line: libp2p's dial errors span many
// ("failed to dial: all dials failed\n  * [addr] reason\n  * …"); this keeps
// the first line and the first reason, and says how many more there are.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	for _, rep := range [][2]string{{"failed to dial: failed to dial", "failed to dial"}, {"failed to open stream err: ", ""}} {
		s = strings.ReplaceAll(s, rep[0], rep[1])
	}
	lines := strings.Split(s, "\n")
	out := strings.TrimSpace(lines[0])
	var more []string
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != "" {
			more = append(more, strings.TrimSpace(strings.TrimPrefix(l, "*")))
		}
	}
	if len(more) > 0 {
		out = strings.TrimSuffix(out, ":") + ": " + more[0]
		if len(more) > 1 {
			out += fmt.Sprintf(" (and %d more)", len(more)-1)
		}
	}
	const max = 240
	if r := []rune(out); len(r) > max {
		out = string(r[:max-1]) + "…"
	}
	return out
}
