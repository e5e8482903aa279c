package endpoint

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// frame is an outgoing kernel message that passed the validator. Only
// encodeLocked makes one and only transmit sends one: every frame the
// endpoint sends is validated (kp §3.7, §10 MUST 5).
type frame struct {
	kind   string
	method string
	params json.RawMessage
}

// encodeLocked validates m against t's tables and encodes it. Called with
// mu held.
func (ep *Endpoint) encodeLocked(t *peerTab, m kernelwire.Message) (frame, error) {
	method, params, err := kernelwire.EncodeOutgoing(m, t)
	if err != nil {
		return frame{}, err
	}
	return frame{kind: m.Kind(), method: method, params: params}, nil
}

// transmit hands f to the node for durable, in-order delivery. Called
// without mu, with t.sendMu held, so that frames leave in the order their
// tables changed.
func (ep *Endpoint) transmit(ctx context.Context, t *peerTab, f frame, hints []string) error {
	_, err := ep.l.SendMessage(ctx, node.Outgoing{To: t.id, Method: f.method, Params: f.params, Tag: tagOf(f.kind), Hints: hints})
	return err
}

// Call sends method(args...) to the object and waits for the result (see
// Send and Promise.Wait).
func (r *Ref) Call(ctx context.Context, method string, args ...any) (any, error) {
	res, err := r.Send(ctx, method, args...)
	if err != nil {
		return nil, err
	}
	return res.Wait(ctx)
}

// Send sends method(args...) to the object and returns its result, a
// promise Go allocated fresh for this message (kp §3.1), once the message
// is durable in the node's outbound log. args may hold Go values, *Ref of
// the same peer, Handlers (Go objects, exported on the way) and local
// *Promise values. The result is settled exactly once: by the peer's
// notify, or with ErrPeerRestarted or ErrGaveUp when the peer can no
// longer answer.
func (r *Ref) Send(ctx context.Context, method string, args ...any) (*Promise, error) {
	if r.local != nil {
		return r.ep.callLocal(r.local, method, args)
	}
	return r.ep.send(ctx, r.peer, r.kind, r.n, r.epoch, method, args)
}

// Call sends method(args...) to the peer's promise (kp §3.1: the peer
// queues it until the promise resolves) and waits for the result. Only for
// a promise a peer sent.
func (p *Promise) Call(ctx context.Context, method string, args ...any) (any, error) {
	if p.peer == "" {
		return nil, fmt.Errorf("%w: Call on a local promise or a result", ErrNotPassable)
	}
	res, err := p.ep.send(ctx, p.peer, kernelwire.Promise, p.n, p.epoch, method, args)
	if err != nil {
		return nil, err
	}
	return res.Wait(ctx)
}

func (ep *Endpoint) send(ctx context.Context, id peer.ID, kind kernelwire.Kind, n, epoch uint64, method string, args []any) (*Promise, error) {
	<-ep.ready
	ep.mu.Lock()
	t := ep.tab(id)
	ep.mu.Unlock()
	t.sendMu.Lock()
	defer t.sendMu.Unlock()

	ep.mu.Lock()
	if ep.stopped {
		ep.mu.Unlock()
		return nil, ErrStopped
	}
	if t.imports[kind][n] == nil || epoch != t.epoch {
		ep.mu.Unlock()
		return nil, fmt.Errorf("%w: r%c+%d of %s", ErrStaleRef, kind, n, id)
	}
	var w writes
	wargs := make([]any, len(args))
	var err error
	for i, a := range args {
		if wargs[i], err = ep.toWire(t, a, &w, 1); err != nil {
			break
		}
	}
	var cd smallcaps.CapData
	if err == nil {
		cd, err = smallcaps.Encode([]any{method, wargs})
	}
	if err != nil {
		ferr := w.flush(ep.st)
		ep.mu.Unlock()
		if ferr != nil {
			ep.log.Warn("endpoint: store", "err", ferr)
		}
		return nil, fmt.Errorf("%w: %v", ErrNotPassable, err)
	}
	entry := &exportEntry{Result: true}
	rn := t.allocExport(kernelwire.Promise, entry, &w)
	result := kernelwire.OutRef(kernelwire.Promise, kernelwire.Local, rn)
	t.fresh[rn] = true
	f, err := ep.encodeLocked(t, &kernelwire.Send{Target: kernelwire.OutRef(kind, kernelwire.Remote, n), Methargs: cd, Result: &result})
	delete(t.fresh, rn)
	res := newResult()
	if err != nil {
		entry.Resolved = true
		w.putExport(t, kernelwire.Promise, rn, entry)
	} else {
		t.calls[rn] = res
	}
	ferr := w.flush(ep.st)
	ep.mu.Unlock()
	if err == nil {
		err = ferr
	}
	if err == nil {
		err = ep.transmit(ctx, t, f, nil)
	}
	if err != nil {
		ep.mu.Lock()
		delete(t.calls, rn)
		ep.mu.Unlock()
		return nil, err
	}
	ep.hookLocals(w.newLocals)
	return res, nil
}

// sendResolution resolves promise p (as Go writes it: rp-K for a result
// the peer allocated, rp+N for a local promise) with v, or rejects it with
// v when rejected, unless Go may no longer resolve it (already resolved,
// or the peer restarted): each is resolved at most once. A value that
// cannot be sent becomes a rejection saying why.
func (ep *Endpoint) sendResolution(t *peerTab, p kernelwire.RRef, v any, rejected bool) {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	ep.mu.Lock()
	if ep.stopped || !t.CanResolve(p) {
		ep.mu.Unlock()
		ep.log.Debug("endpoint: resolution dropped: no longer Go's to resolve", "peer", t.id, "promise", p)
		return
	}
	var w writes
	cd, err := ep.encodeFor(t, v, &w)
	var f frame
	if err == nil {
		f, err = ep.encodeLocked(t, &kernelwire.Notify{Resolutions: []kernelwire.Resolution{{Promise: p, Rejected: rejected, Data: cd}}})
	}
	if err != nil {
		ep.log.Warn("endpoint: resolution not sendable; rejecting instead", "peer", t.id, "promise", p, "err", err)
		cd, _ = ep.encodeFor(t, &smallcaps.Error{Name: "Error", Message: "result not passable: " + err.Error()}, &w)
		f, err = ep.encodeLocked(t, &kernelwire.Notify{Resolutions: []kernelwire.Resolution{{Promise: p, Rejected: true, Data: cd}}})
	}
	if err != nil {
		ep.mu.Unlock()
		ep.log.Error("endpoint: resolution refused by the validator", "peer", t.id, "promise", p, "err", err)
		return
	}
	if p.Plus {
		e := t.exports[kernelwire.Promise][p.N]
		e.Resolved = true
		w.putExport(t, kernelwire.Promise, p.N, e)
	} else {
		e := t.imports[kernelwire.Promise][p.N]
		e.Resolved = true
		w.putImport(t, kernelwire.Promise, p.N, e)
	}
	ferr := w.flush(ep.st)
	ep.mu.Unlock()
	if ferr != nil {
		ep.log.Error("endpoint: store", "err", ferr)
		return
	}
	if err := ep.transmit(ep.ctx, t, f, nil); err != nil {
		ep.log.Warn("endpoint: sending a resolution", "peer", t.id, "promise", p, "err", err)
		return
	}
	ep.hookLocals(w.newLocals)
}

// hookLocals makes local promises just exported notify their peers when
// they settle. Called without mu.
func (ep *Endpoint) hookLocals(ps []*Promise) {
	for _, p := range ps {
		p.mu.Lock()
		key := p.key
		p.mu.Unlock()
		ep.mu.Lock()
		seen := ep.hooked[key]
		ep.hooked[key] = true
		ep.mu.Unlock()
		if !seen {
			p.onSettle(func() { ep.goRun(func() { ep.notifyLocal(key) }) })
		} else if _, _, ok := p.Settled(); ok {
			ep.goRun(func() { ep.notifyLocal(key) })
		}
	}
}

// notifyLocal sends the resolution of local promise key to every peer it
// was exported to and has not had it.
func (ep *Endpoint) notifyLocal(key string) {
	ep.mu.Lock()
	p := ep.locals[key]
	var tabs []*peerTab
	var refs []kernelwire.RRef
	for _, t := range ep.peers {
		if n, ok := t.byKey[key]; ok {
			if e := t.exports[kernelwire.Promise][n]; e != nil && !e.Resolved {
				tabs = append(tabs, t)
				refs = append(refs, kernelwire.OutRef(kernelwire.Promise, kernelwire.Local, n))
			}
		}
	}
	ep.mu.Unlock()
	if p == nil {
		return
	}
	v, err, ok := p.Settled()
	if !ok {
		return
	}
	for i, t := range tabs {
		if err != nil {
			ep.sendResolution(t, refs[i], errorValue(err), true)
		} else {
			ep.sendResolution(t, refs[i], v, false)
		}
	}
}
