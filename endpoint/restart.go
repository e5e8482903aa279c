package endpoint

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
	"github.com/ocapnet/ocapnet/transport"
)

// checkIncarnationLocked resets t when the peer's incarnation is not the
// one its tables belong to (kp §8.2). The node learns the incarnation at
// the handshake, before the channel carries frames, so the first frame of
// a new incarnation always finds it; the PeerRestarted event may come
// before or after and then finds the tables already reset. Called with mu
// held.
func (ep *Endpoint) checkIncarnationLocked(t *peerTab, inc string, w *writes, after *[]func()) {
	switch {
	case inc == "" || inc == t.meta.Inc:
	case t.meta.Inc == "":
		t.meta.Inc = inc
		w.putMeta(t)
	default:
		ep.resetPeerLocked(t, inc, w, after)
	}
}

// resetPeerLocked applies kp §8.2 for a peer that lost its state: its
// imports are dropped, Go's exports to it forgotten (no GC frames will
// come for them), and every call, redemption and promise of it that Go
// code waits on is rejected with ErrPeerRestarted. Go's counters carry
// on, so no number is reused. Called with mu held.
func (ep *Endpoint) resetPeerLocked(t *peerTab, inc string, w *writes, after *[]func()) {
	ep.log.Info("endpoint: peer restarted with a new incarnation: its tables are reset", "peer", t.id,
		"previous", t.meta.Inc, "current", inc, "calls", len(t.calls), "redemptions", len(t.redeems))
	prefix := []byte(peerPrefix(t.id))
	w.delPrefix(append(bytes.Clone(prefix), "x/"...))
	w.delPrefix(append(bytes.Clone(prefix), "i/"...))
	calls, redeems, promises := t.calls, t.redeems, t.promises
	fresh := newPeerTab(t.id)
	fresh.meta = peerMeta{NextObject: t.meta.NextObject, NextPromise: t.meta.NextPromise, Inc: inc}
	fresh.nextKey = t.nextKey
	t.epoch++
	t.meta, t.exports, t.byKey, t.imports = fresh.meta, fresh.exports, fresh.byKey, fresh.imports
	t.fresh, t.awaiting, t.calls, t.redeems, t.promises, t.resolving = fresh.fresh, fresh.awaiting, fresh.calls, fresh.redeems, fresh.promises, fresh.resolving
	w.putMeta(t)
	*after = append(*after, func() {
		for _, p := range calls {
			p.settle(nil, localRejection(ErrPeerRestarted, textPeerRestarted))
		}
		for _, r := range redeems {
			r.p.settle(nil, fmt.Errorf("%w: %s", ErrPeerRestarted, textRedeemRestarted))
		}
		for _, p := range promises {
			p.settle(nil, localRejection(ErrPeerRestarted, textPeerRestarted))
		}
	})
}

// onEvent follows the node: a peer's new incarnation resets its tables; a
// give-up rejects what waits on that peer (K3: Go callers never hang) and
// discards the given-up kernel frames, which could otherwise hold back
// every later frame to the peer.
func (ep *Endpoint) onEvent(ev node.Event) {
	select {
	case <-ep.ready:
	default:
		<-ep.ready
	}
	switch ev := ev.(type) {
	case node.PeerRestarted:
		var after []func()
		ep.mu.Lock()
		if !ep.stopped {
			var w writes
			ep.checkIncarnationLocked(ep.tab(ev.Peer), ev.Current, &w, &after)
			if err := w.flush(ep.st); err != nil {
				ep.log.Error("endpoint: store", "err", err)
			}
		}
		ep.mu.Unlock()
		for _, f := range after {
			f()
		}
	case node.GaveUp:
		ep.onGaveUp(ev)
	case node.StateChanged:
		switch st := ev.Peer.State; st {
		case transport.StateClosed, transport.StateClosedByPeer, transport.StateGaveUp:
			// The link will not come back by itself: nothing waiting on
			// the peer can be answered (a GaveUp event comes only when
			// messages were still unacknowledged).
			ep.rejectPeer(ev.Peer.ID, fmt.Errorf("link %s", st))
		}
	}
	if ep.opts.OnEvent != nil {
		ep.opts.OnEvent(ev)
	}
}

// rejectPeer rejects every call and redemption waiting on id with
// ErrGaveUp (and reason).
func (ep *Endpoint) rejectPeer(id peer.ID, reason error) {
	var calls []*Promise
	var redeems []*redeemWait
	ep.mu.Lock()
	if t := ep.peers[id]; t != nil {
		for n, p := range t.calls {
			calls = append(calls, p)
			delete(t.calls, n)
		}
		for k, r := range t.redeems {
			redeems = append(redeems, r)
			delete(t.redeems, k)
		}
	}
	ep.mu.Unlock()
	if len(calls)+len(redeems) > 0 {
		ep.log.Info("endpoint: delivery given up: rejecting what waits on the peer", "peer", id, "reason", reason,
			"calls", len(calls), "redemptions", len(redeems))
	}
	for _, p := range calls {
		p.settle(nil, localRejection(fmt.Errorf("%w: %w", ErrGaveUp, reason), textGaveUp(id)))
	}
	for _, r := range redeems {
		r.p.settle(nil, fmt.Errorf("%w: %w", ErrGaveUp, reason))
	}
}

func (ep *Endpoint) onGaveUp(ev node.GaveUp) {
	if !errors.Is(ev.Reason, transport.ErrPeerRestarted) {
		ep.rejectPeer(ev.Peer, ev.Reason)
	}
	ours := len(ev.Messages) > 0
	for _, m := range ev.Messages {
		if !IsFrameTag(m.Tag) {
			ours = false
		}
	}
	if !ours {
		if len(ev.Messages) > 0 {
			ep.log.Info("endpoint: given-up messages include the application's; left parked for it", "peer", ev.Peer)
		}
		return
	}
	id := ev.Peer
	ep.goRun(func() {
		if n, err := ep.l.Discard(id); err != nil && !errors.Is(err, node.ErrNothingParked) {
			ep.log.Warn("endpoint: discarding given-up kernel frames", "peer", id, "err", err)
		} else {
			ep.log.Info("endpoint: given-up kernel frames discarded", "peer", id, "count", n)
		}
	})
}

// sweep settles what a previous process left pending and nobody else
// can: results of calls peers made to Go objects whose handlers did not
// finish (rejected: each result is resolved exactly once, also across a
// crash), and local promises exported to peers (rejected: their Go side is
// gone). Results of Go's own calls need nothing: their callers are gone and
// a late notify is ignored.
func (ep *Endpoint) sweep() {
	type todo struct {
		t *peerTab
		p kernelwire.RRef
	}
	var list []todo
	ep.mu.Lock()
	for _, t := range ep.peers {
		for n, e := range t.imports[kernelwire.Promise] {
			if e.Decide && !e.Resolved {
				list = append(list, todo{t, kernelwire.OutRef(kernelwire.Promise, kernelwire.Remote, n)})
			}
		}
		for n, e := range t.exports[kernelwire.Promise] {
			if !e.Result && !e.Resolved && ep.locals[e.Key] == nil {
				list = append(list, todo{t, kernelwire.OutRef(kernelwire.Promise, kernelwire.Local, n)})
			}
		}
	}
	ep.mu.Unlock()
	if len(list) == 0 {
		return
	}
	ep.log.Info("endpoint: rejecting promises a previous process left pending", "count", len(list))
	ep.goRun(func() {
		for _, x := range list {
			ep.sendResolution(x.t, x.p, &smallcaps.Error{Name: "Error", Message: textLocalRestart}, true)
		}
	})
}
