package endpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/ocapurl"
	"github.com/ocapnet/ocapnet/store"
)

// redeemWait is one of Go's redemptions waiting for its reply.
type redeemWait struct{ p *Promise }

// Export makes h callable by peers and returns an OCAP URL for it (kp §7):
// ocap:<oid>@<this peer>[,<relay hint>]*, with an unguessable oid. The URL
// is valid while this process runs; after a restart only objects exported
// with ExportNamed are bound again. Exporting the same h again returns the
// same URL.
func (ep *Endpoint) Export(h Handler) (string, error) { return ep.export("", h) }

// ExportNamed exports h under a durable name: the URL (and every reference
// a peer holds to the object) is kept in the data directory, so after a
// restart ExportNamed with the same name binds the new h to the same URL,
// and peers' existing references reach it again. A nil h means the object
// already bound under name (Options.Objects, or an earlier ExportNamed).
func (ep *Endpoint) ExportNamed(name string, h Handler) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidOptions)
	}
	return ep.export("n/"+name, h)
}

func (ep *Endpoint) export(key string, h Handler) (string, error) {
	<-ep.ready
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.stopped {
		return "", ErrStopped
	}
	var o *localObj
	if h == nil {
		if o = ep.objects[key]; o == nil || key == "" {
			return "", fmt.Errorf("%w: no object bound under %q", ErrInvalidOptions, strings.TrimPrefix(key, "n/"))
		}
	} else {
		var err error
		if o, err = ep.registerLocked(h, key); err != nil {
			return "", err
		}
	}
	rec, ok := ep.records[o.key]
	if !ok {
		oid, err := ocapurl.NewOID()
		if err != nil {
			return "", err
		}
		rec = objRecord{OID: oid}
		var w writes
		w.put([]byte("o/"+o.key), rec)
		w.ops = append(w.ops, kvOp{key: []byte("u/" + oid), val: []byte(o.key)})
		if err := w.flush(ep.st); err != nil {
			return "", err
		}
		ep.records[o.key] = rec
		ep.oids[oid] = o.key
	}
	return ocapurl.Format(ocapurl.URL{OID: rec.OID, Host: ep.self.String(), Hints: ep.hints()})
}

// hints are the relay hints of issued URLs (kp §7.3): Options.Hints, or
// the first three of the store's relay pool, or else the relays this node
// holds a reservation on (from its /p2p-circuit addresses). Called with mu
// held.
func (ep *Endpoint) hints() []string {
	if ep.opts.Hints != nil {
		return ep.opts.Hints
	}
	var pool []store.RelayEntry
	_ = ep.st.View(func(tx *store.Tx) (err error) { pool, err = tx.Relays(); return })
	var out []string
	for _, e := range pool {
		out = append(out, e.Addr)
	}
	if len(out) == 0 && ep.node != nil {
		for _, a := range ep.node.ListenAddrs() {
			if relay, _, ok := strings.Cut(a, "/p2p-circuit"); ok && !slices.Contains(out, relay) {
				out = append(out, relay)
			}
		}
	}
	return out[:min(len(out), 3)]
}

// Redeem redeems an OCAP URL and returns a reference to its object: it
// sends redeemURL to the issuer (dialling it through the URL's relay
// hints) and waits for the reply, at most Options.RedeemTimeout. A URL of
// this endpoint is redeemed locally. Errors: *RedeemError (the issuer's
// text), ErrRedeemTimeout, ErrPeerRestarted, ErrGaveUp, ctx's error,
// ocapurl's parse errors.
func (ep *Endpoint) Redeem(ctx context.Context, url string) (*Ref, error) {
	<-ep.ready
	u, err := ocapurl.Parse(url)
	if err != nil {
		return nil, err
	}
	host, err := peer.Decode(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%w: host %q is not a peer ID", ocapurl.ErrBadURL, u.Host)
	}
	if host == ep.self {
		ep.mu.Lock()
		defer ep.mu.Unlock()
		if o := ep.objects[ep.oids[u.OID]]; o != nil && ep.oids[u.OID] != "" {
			return &Ref{ep: ep, local: o, kind: kernelwire.Object, iface: o.iface}, nil
		}
		return nil, &RedeemError{Text: ocapurl.ErrBadObjectRef.Error()}
	}
	ep.mu.Lock()
	t := ep.tab(host)
	ep.mu.Unlock()

	t.sendMu.Lock()
	ep.mu.Lock()
	if ep.stopped {
		ep.mu.Unlock()
		t.sendMu.Unlock()
		return nil, ErrStopped
	}
	var key string
	for {
		t.nextKey++
		key = strconv.FormatUint(t.nextKey, 10)
		if t.redeems[key] == nil {
			break
		}
	}
	f, err := ep.encodeLocked(t, &kernelwire.RedeemURL{URL: url, ReplyKey: key})
	wait := &redeemWait{p: newResult()}
	if err == nil {
		t.redeems[key] = wait
	}
	ep.mu.Unlock()
	if err == nil {
		err = ep.transmit(ctx, t, f, u.Hints)
	}
	t.sendMu.Unlock()
	forget := func() {
		ep.mu.Lock()
		if t.redeems[key] == wait {
			delete(t.redeems, key)
		}
		ep.mu.Unlock()
	}
	if err != nil {
		forget()
		return nil, err
	}
	timer := time.NewTimer(ep.opts.RedeemTimeout)
	defer timer.Stop()
	select {
	case <-wait.p.Done():
		v, err := wait.p.Wait(ctx)
		if err != nil {
			return nil, err
		}
		return v.(*Ref), nil
	case <-timer.C:
		forget()
		return nil, fmt.Errorf("%w after %v", ErrRedeemTimeout, ep.opts.RedeemTimeout)
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// onRedeemURL answers a peer's redemption (kp §3.5, §7.4), with the
// JavaScript issuer's failure texts. The reply is sent after the frame is
// applied.
func (ep *Endpoint) onRedeemURL(t *peerTab, m *kernelwire.RedeemURL, w *writes, after *[]func()) {
	reply := &kernelwire.RedeemURLReply{ReplyKey: m.ReplyKey}
	u, err := ocapurl.ParseLenient(m.URL)
	switch {
	case err != nil:
		reply.Error = parseText(err)
	case u.Host != ep.self.String():
		reply.Error = ocapurl.ErrNotMyHost.Error()
	default:
		key := ep.oids[u.OID]
		if o := ep.objects[key]; key == "" || o == nil {
			reply.Error = ocapurl.ErrBadObjectRef.Error()
		} else {
			reply.OK = true
			reply.Ref = kernelwire.OutRef(kernelwire.Object, kernelwire.Local, t.exportKey(kernelwire.Object, key, w))
		}
	}
	if m.ReplyKey == "" {
		ep.log.Warn("endpoint: redeemURL with an empty reply key cannot be answered", "peer", t.id)
		return
	}
	t.awaiting[m.ReplyKey] = true
	*after = append(*after, func() {
		ep.goRun(func() { ep.sendReply(t, reply) })
	})
}

func parseText(err error) string {
	for _, e := range []error{ocapurl.ErrUnparseable, ocapurl.ErrNotOcap, ocapurl.ErrBadURL} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return ocapurl.ErrBadURL.Error()
}

func (ep *Endpoint) sendReply(t *peerTab, reply *kernelwire.RedeemURLReply) {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	ep.mu.Lock()
	f, err := ep.encodeLocked(t, reply)
	delete(t.awaiting, reply.ReplyKey)
	ep.mu.Unlock()
	if err != nil {
		ep.log.Error("endpoint: redeemURLReply refused by the validator", "peer", t.id, "err", err)
		return
	}
	if err := ep.transmit(ep.ctx, t, f, nil); err != nil {
		ep.log.Warn("endpoint: sending redeemURLReply", "peer", t.id, "err", err)
	}
}

// onRedeemURLReply settles one of Go's redemptions. A reply nobody waits
// for (late, after the timeout) is logged, never refused (K4).
func (ep *Endpoint) onRedeemURLReply(t *peerTab, m *kernelwire.RedeemURLReply, w *writes, after *[]func()) {
	wait := t.redeems[m.ReplyKey]
	if wait == nil {
		ep.log.Warn("endpoint: redeemURLReply for no pending redemption ignored", "peer", t.id, "key", m.ReplyKey)
		return
	}
	delete(t.redeems, m.ReplyKey)
	if !m.OK {
		*after = append(*after, func() { wait.p.settle(nil, &RedeemError{Text: m.Error}) })
		return
	}
	r := m.Ref
	if !r.Plus {
		// Our own allocation: only a local object can be meant.
		e := t.exports[r.Kind][r.N]
		var o *localObj
		if e != nil && r.Kind == kernelwire.Object {
			o = ep.objects[e.Key]
		}
		if o == nil {
			*after = append(*after, func() {
				wait.p.settle(nil, &RedeemError{Text: fmt.Sprintf("the issuer answered %s, which names no Go object", r)})
			})
			return
		}
		ref := &Ref{ep: ep, local: o, kind: kernelwire.Object, iface: o.iface}
		*after = append(*after, func() { wait.p.settle(ref, nil) })
		return
	}
	e := t.importRef(r.Kind, r.N, "", w)
	ref := &Ref{ep: ep, peer: t.id, kind: r.Kind, n: r.N, epoch: t.epoch, iface: e.Iface}
	*after = append(*after, func() { wait.p.settle(ref, nil) })
}
