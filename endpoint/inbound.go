package endpoint

import (
	"errors"
	"fmt"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// onNodeMessage applies one inbound message. The node calls it per peer
// in sequence order, exactly once (Redelivery after a crash is recognised
// by the applied position kept with the tables). The tables' changes are
// durable before it returns; calls to Go objects and frames to send run
// afterwards on the endpoint's goroutines (the node's read loop never
// waits for a handler or for room in a window).
func (ep *Endpoint) onNodeMessage(m node.Message) error {
	<-ep.ready
	switch m.Method {
	case kernelwire.MethodDeliver, kernelwire.MethodRedeemURL, kernelwire.MethodRedeemURLReply:
	default:
		if ep.opts.OnMessage != nil {
			return ep.opts.OnMessage(m)
		}
		ep.log.Info("endpoint: not a kernel message; accepted and ignored", "peer", m.From, "method", m.Method)
		return nil
	}
	var after []func()
	err := ep.apply(m, &after)
	for _, f := range after {
		f()
	}
	return err
}

func (ep *Endpoint) apply(m node.Message, after *[]func()) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.stopped {
		return ErrStopped // refused: the node offers it again after a restart
	}
	t := ep.tab(m.From)
	var w writes
	ep.checkIncarnationLocked(t, ep.l.Incarnation(m.From), &w, after)
	if m.Redelivery && m.Seq <= t.meta.Applied {
		ep.log.Debug("endpoint: redelivery of an applied message skipped", "peer", t.id, "seq", m.Seq)
		return w.flush(ep.st)
	}
	msg, err := kernelwire.Decode(m.Method, m.Params)
	if err != nil {
		// Refusing it would make the peer retransmit it until it gives
		// up (K4's mirror image): accept it and say so.
		ep.log.Warn("endpoint: undecodable kernel message accepted and ignored", "peer", t.id, "seq", m.Seq, "err", err)
	} else {
		switch msg := msg.(type) {
		case *kernelwire.Send:
			ep.onSend(t, msg, &w, after)
		case *kernelwire.Notify:
			ep.onNotify(t, msg, &w, after)
		case *kernelwire.DropExports, *kernelwire.RetireExports, *kernelwire.RetireImports:
			ep.onGC(t, msg, &w)
		case *kernelwire.BringOutYourDead:
			// kp §3.4: no effect; the node acknowledges it.
		case *kernelwire.RedeemURL:
			ep.onRedeemURL(t, msg, &w, after)
		case *kernelwire.RedeemURLReply:
			ep.onRedeemURLReply(t, msg, &w, after)
		}
	}
	if m.Seq > t.meta.Applied {
		t.meta.Applied = m.Seq
	}
	w.putMeta(t)
	if err := w.flush(ep.st); err != nil {
		ep.log.Error("endpoint: store", "err", err)
		return err
	}
	return nil
}

// onSend handles a message to a Go object (kp §3.1).
func (ep *Endpoint) onSend(t *peerTab, m *kernelwire.Send, w *writes, after *[]func()) {
	var result uint64
	if r := m.Result; r != nil {
		if r.Kind == kernelwire.Promise && r.Plus {
			e := t.importRef(kernelwire.Promise, r.N, "", w)
			if e.Decide || e.Resolved {
				ep.log.Warn("endpoint: message reuses a result promise; not resolving it again", "peer", t.id, "result", *r)
			} else {
				e.Decide = true
				w.putImport(t, kernelwire.Promise, r.N, e)
				result = r.N
			}
		} else {
			ep.log.Warn("endpoint: message result is not the peer's promise; ignored", "peer", t.id, "result", *r)
		}
	}
	reject := func(v any) {
		if result == 0 {
			return
		}
		n := result
		*after = append(*after, func() {
			ep.goRun(func() { ep.resolveInbound(t.id, n, nil, rejectionError{v}) })
		})
	}
	var obj *localObj
	if tg := m.Target; tg.Kind == kernelwire.Object && !tg.Plus {
		if e := t.exports[kernelwire.Object][tg.N]; e != nil {
			obj = ep.objects[e.Key]
		}
	}
	if obj == nil {
		ep.log.Info("endpoint: message to no live Go object", "peer", t.id, "target", m.Target)
		reject(&smallcaps.Error{Name: "Error", Message: textObjectDeleted})
		return
	}
	v, err := ep.decodeFrom(t, m.Methargs, w)
	var method string
	var args []any
	if err == nil {
		method, args, err = splitMethargs(v)
	}
	if err != nil {
		ep.log.Warn("endpoint: bad methargs", "peer", t.id, "err", err)
		reject(&smallcaps.Error{Name: "TypeError", Message: "bad methargs: " + err.Error()})
		return
	}
	c := call{from: t.id, result: result, method: method, args: args}
	*after = append(*after, func() { ep.deliver(obj, c) })
}

// rejectionError carries a rejection value through resolveInbound.
type rejectionError struct{ v any }

func (r rejectionError) Error() string { return fmt.Sprint(r.v) }

func splitMethargs(v any) (string, []any, error) {
	ma, ok := v.([]any)
	if !ok || len(ma) != 2 {
		return "", nil, errors.New("not [method, args]")
	}
	args, ok := ma[1].([]any)
	if !ok {
		return "", nil, errors.New("args is not an array")
	}
	switch m := ma[0].(type) {
	case string:
		return m, args, nil
	case smallcaps.Symbol:
		return "%" + string(m), args, nil
	}
	return "", nil, fmt.Errorf("method is a %T", ma[0])
}

// onNotify applies resolutions in order (kp §3.2), refs first seen in the
// frame included.
func (ep *Endpoint) onNotify(t *peerTab, m *kernelwire.Notify, w *writes, after *[]func()) {
	for _, r := range m.Resolutions {
		p := r.Promise
		if p.Kind != kernelwire.Promise {
			ep.log.Warn("endpoint: notify for a non-promise ignored", "peer", t.id, "ref", p)
			continue
		}
		var target *Promise
		if !p.Plus {
			e := t.exports[kernelwire.Promise][p.N]
			switch {
			case e == nil:
				ep.log.Warn("endpoint: notify for an unknown Go promise ignored", "peer", t.id, "ref", p)
				continue
			case !e.Result || e.Resolved:
				continue // the echo of our own resolution (kp §3.2): a no-op, never answered
			}
			e.Resolved = true
			w.putExport(t, kernelwire.Promise, p.N, e)
			target = t.calls[p.N]
			delete(t.calls, p.N)
		} else {
			e := t.importRef(kernelwire.Promise, p.N, "", w)
			if e.Decide || e.Resolved {
				ep.log.Warn("endpoint: notify for a promise already settled or decided by Go ignored", "peer", t.id, "ref", p)
				continue
			}
			e.Resolved = true
			w.putImport(t, kernelwire.Promise, p.N, e)
			target = t.remotePromise(ep, p.N)
		}
		v, err := ep.decodeFrom(t, r.Data, w)
		var rerr error
		switch {
		case err != nil:
			v, rerr = nil, &Rejection{Value: &smallcaps.Error{Name: "Error", Message: "undecodable resolution: " + err.Error()}}
		case r.Rejected:
			v, rerr = nil, &Rejection{Value: v}
		}
		if target != nil {
			*after = append(*after, func() { target.settle(v, rerr) })
		}
	}
}
