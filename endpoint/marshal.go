package endpoint

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"reflect"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// localObj is a Go object peers may name.
type localObj struct {
	key   string
	h     Handler
	iface string
	box   mailbox
}

func randomKey(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// methodsID identifies a Methods table by its map.
type methodsID struct{ p uintptr }

// identity returns a comparable identity of h, or false if it has none
// (a Handler of a non-comparable type other than Methods).
func identity(h Handler) (any, bool) {
	if m, ok := h.(Methods); ok {
		return methodsID{reflect.ValueOf(m).Pointer()}, true
	}
	if reflect.TypeOf(h).Comparable() {
		return h, true
	}
	return nil, false
}

func ifaceOf(h Handler) string {
	if i, ok := h.(Interfacer); ok && i.Interface() != "" {
		return "Alleged: " + i.Interface()
	}
	return "Alleged: GoObject"
}

// registerLocked returns h's local object, registering it under a new
// anonymous key (or key, when not "") the first time. Called with mu held.
func (ep *Endpoint) registerLocked(h Handler, key string) (*localObj, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: a nil Handler", ErrNotPassable)
	}
	id, ok := identity(h)
	if !ok {
		return nil, fmt.Errorf("%w: a Handler of type %T has no identity (use a pointer)", ErrNotPassable, h)
	}
	if o := ep.byID[id]; o != nil && (key == "" || o.key == key) {
		return o, nil
	}
	if key == "" {
		key = randomKey("a/")
	}
	if old := ep.objects[key]; old != nil {
		if oldID, ok := identity(old.h); ok {
			delete(ep.byID, oldID)
		}
	}
	o := &localObj{key: key, h: h, iface: ifaceOf(h)}
	ep.objects[key] = o
	ep.byID[id] = o
	return o, nil
}

// toWire turns a Go value into a smallcaps value for peer t, allocating
// export entries for Go objects and promises and checking references.
// Called with mu held.
func (ep *Endpoint) toWire(t *peerTab, v any, w *writes, depth int) (any, error) {
	if depth > smallcaps.MaxDepth {
		return nil, fmt.Errorf("%w: nested too deeply", ErrNotPassable)
	}
	switch x := v.(type) {
	case nil, bool, string, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		*big.Int, smallcaps.Undefined, smallcaps.Symbol:
		return v, nil
	case *smallcaps.Error:
		return x, nil
	case *Ref:
		if x.local != nil {
			return ep.toWire(t, x.local.h, w, depth)
		}
		if x.ep != ep || x.peer != t.id {
			return nil, fmt.Errorf("%w: a reference to %s's object cannot be sent to %s (no three-party handoff)", ErrNotPassable, x.peer, t.id)
		}
		if t.imports[x.kind][x.n] == nil || x.epoch != t.epoch {
			return nil, fmt.Errorf("%w: %s", ErrStaleRef, x)
		}
		slot := kernelwire.OutRef(x.kind, kernelwire.Remote, x.n).String()
		if x.kind == kernelwire.Promise {
			return smallcaps.Promise{Slot: slot}, nil
		}
		return smallcaps.Remotable{Slot: slot, Iface: x.iface}, nil
	case *Promise:
		if x.peer != "" {
			if x.ep != ep || x.peer != t.id {
				return nil, fmt.Errorf("%w: a promise of %s cannot be sent to %s", ErrNotPassable, x.peer, t.id)
			}
			if t.imports[kernelwire.Promise][x.n] == nil || x.epoch != t.epoch {
				return nil, fmt.Errorf("%w: promise %d of %s", ErrStaleRef, x.n, x.peer)
			}
			return smallcaps.Promise{Slot: kernelwire.OutRef(kernelwire.Promise, kernelwire.Remote, x.n).String()}, nil
		}
		if x.result {
			return nil, fmt.Errorf("%w: a call's result cannot be sent (wait for it, or send a NewPromise)", ErrNotPassable)
		}
		x.mu.Lock()
		if x.key == "" {
			x.key = randomKey("q/")
		}
		key := x.key
		x.mu.Unlock()
		ep.locals[key] = x
		n := t.exportKey(kernelwire.Promise, key, w)
		w.newLocals = append(w.newLocals, x)
		return smallcaps.Promise{Slot: kernelwire.OutRef(kernelwire.Promise, kernelwire.Local, n).String()}, nil
	case Handler:
		o, err := ep.registerLocked(x, "")
		if err != nil {
			return nil, err
		}
		n := t.exportKey(kernelwire.Object, o.key, w)
		return smallcaps.Remotable{Slot: kernelwire.OutRef(kernelwire.Object, kernelwire.Local, n).String(), Iface: o.iface}, nil
	case *Rejection:
		return ep.toWire(t, x.Value, w, depth+1)
	case error:
		return errorValue(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = ep.toWire(t, e, w, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var err error
			if out[k], err = ep.toWire(t, e, w, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case smallcaps.Record:
		out := make(smallcaps.Record, len(x))
		for i, f := range x {
			val, err := ep.toWire(t, f.Value, w, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = smallcaps.Field{Key: f.Key, Value: val}
		}
		return out, nil
	case smallcaps.Tagged:
		p, err := ep.toWire(t, x.Payload, w, depth+1)
		if err != nil {
			return nil, err
		}
		return smallcaps.Tagged{Tag: x.Tag, Payload: p}, nil
	case smallcaps.Remotable, smallcaps.Promise, *smallcaps.Remotable, *smallcaps.Promise:
		return nil, fmt.Errorf("%w: raw slots; pass a *Ref, a Handler or a *Promise", ErrNotPassable)
	}
	return nil, fmt.Errorf("%w: a %T", ErrNotPassable, v)
}

// encodeFor marshals v for peer t. Called with mu held.
func (ep *Endpoint) encodeFor(t *peerTab, v any, w *writes) (smallcaps.CapData, error) {
	wv, err := ep.toWire(t, v, w, 0)
	if err != nil {
		return smallcaps.CapData{}, err
	}
	cd, err := smallcaps.Encode(wv)
	if err != nil {
		return smallcaps.CapData{}, fmt.Errorf("%w: %v", ErrNotPassable, err)
	}
	if cd.Slots == nil {
		cd.Slots = []string{}
	}
	return cd, nil
}

// decodeFrom decodes CapData from peer t into Go values: the peer's
// objects become *Ref (import entries made for new ones, kp §2.3), its
// promises *Promise, Go's own objects and promises the Go values. Called
// with mu held.
func (ep *Endpoint) decodeFrom(t *peerTab, cd smallcaps.CapData, w *writes) (any, error) {
	v, err := smallcaps.Decode(cd)
	if err != nil {
		return nil, err
	}
	return ep.fromWire(t, v, w)
}

func (ep *Endpoint) fromWire(t *peerTab, v any, w *writes) (any, error) {
	switch x := v.(type) {
	case smallcaps.Remotable:
		r, err := kernelwire.ParseRRef(x.Slot)
		if err != nil {
			return nil, err
		}
		if r.Kind != kernelwire.Object {
			return nil, fmt.Errorf("remotable slot %s is not an object", x.Slot)
		}
		if r.AllocatedBy() == kernelwire.Remote {
			e := t.importRef(kernelwire.Object, r.N, x.Iface, w)
			return &Ref{ep: ep, peer: t.id, kind: kernelwire.Object, n: r.N, epoch: t.epoch, iface: e.Iface}, nil
		}
		e := t.exports[kernelwire.Object][r.N]
		if e == nil || ep.objects[e.Key] == nil {
			return nil, fmt.Errorf("%w: %s names no live Go object", ErrStaleRef, x.Slot)
		}
		return ep.objects[e.Key].h, nil
	case smallcaps.Promise:
		r, err := kernelwire.ParseRRef(x.Slot)
		if err != nil {
			return nil, err
		}
		if r.Kind != kernelwire.Promise {
			return nil, fmt.Errorf("promise slot %s is not a promise", x.Slot)
		}
		if r.AllocatedBy() == kernelwire.Remote {
			t.importRef(kernelwire.Promise, r.N, "", w)
			return t.remotePromise(ep, r.N), nil
		}
		e := t.exports[kernelwire.Promise][r.N]
		if e == nil || ep.locals[e.Key] == nil {
			return nil, fmt.Errorf("%w: %s names no live Go promise", ErrStaleRef, x.Slot)
		}
		return ep.locals[e.Key], nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = ep.fromWire(t, e, w); err != nil {
				return nil, err
			}
		}
		return out, nil
	case smallcaps.Record:
		out := make(smallcaps.Record, len(x))
		for i, f := range x {
			val, err := ep.fromWire(t, f.Value, w)
			if err != nil {
				return nil, err
			}
			out[i] = smallcaps.Field{Key: f.Key, Value: val}
		}
		return out, nil
	case smallcaps.Tagged:
		p, err := ep.fromWire(t, x.Payload, w)
		if err != nil {
			return nil, err
		}
		return smallcaps.Tagged{Tag: x.Tag, Payload: p}, nil
	}
	return v, nil
}

// remotePromise returns the *Promise standing for the peer's promise n.
func (t *peerTab) remotePromise(ep *Endpoint, n uint64) *Promise {
	p := t.promises[n]
	if p == nil {
		p = newRemotePromise(ep, t.id, n, t.epoch)
		t.promises[n] = p
	}
	return p
}
