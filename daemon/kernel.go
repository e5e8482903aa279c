package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/endpoint"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// The kernel ops (Options.Kernel, --kernel): export a handler whose calls
// arrive as "call" events and are answered by "resolve"; redeem an OCAP
// URL; call a method. Values are JSON in smallcaps' bridge form
// (smallcaps.ToJSON/FromJSON), where a reference is {"@ref":"<handle>"}:
// "obj:<name>" for an object this daemon exported, "ref:<n>" for a peer's
// object. docs/DAEMON.md "Kernel endpoint".

// ErrNoKernel: a kernel op without Options.Kernel.
var ErrNoKernel = errors.New("the kernel endpoint is off (start the daemon with --kernel)")

// ErrUnknownHandle: a call, ref or object handle the daemon does not know.
var ErrUnknownHandle = errors.New("unknown handle")

// kernelState is the daemon's side of the endpoint: handles for the
// objects it exported and the references it received, and the calls
// waiting for a resolve op.
type kernelState struct {
	mu      sync.Mutex
	objects map[string]*daemonObject // "obj:<name>"
	refs    map[string]*endpoint.Ref // "ref:<n>"
	refKeys map[string]string        // Ref.String() → handle
	nextRef uint64
	calls   map[string]chan callAnswer
	nextID  uint64
}

func newKernelState() *kernelState {
	return &kernelState{objects: map[string]*daemonObject{}, refs: map[string]*endpoint.Ref{}, refKeys: map[string]string{},
		calls: map[string]chan callAnswer{}}
}

type callAnswer struct {
	value any
	err   error
}

// daemonObject is an exported object whose methods the daemon's client
// implements.
type daemonObject struct {
	d     *Daemon
	id    string
	iface string
}

func (o *daemonObject) Interface() string { return o.iface }

// HandleCall publishes a call event and waits for its resolve op.
func (o *daemonObject) HandleCall(ctx context.Context, method string, args []any) (any, error) {
	k := o.d.kernel
	jargs, err := k.toJSON(args)
	if err != nil {
		return nil, err
	}
	ch := make(chan callAnswer, 1)
	k.mu.Lock()
	k.nextID++
	callID := "c" + strconv.FormatUint(k.nextID, 10)
	k.calls[callID] = ch
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.calls, callID)
		k.mu.Unlock()
	}()
	line := mustJSON(struct {
		Event  string `json:"event"`
		Call   string `json:"call"`
		Object string `json:"object"`
		From   string `json:"from,omitempty"`
		Method string `json:"method"`
		Args   any    `json:"args"`
	}{"call", callID, o.id, callerString(endpoint.Caller(ctx)), method, jargs})
	if err := o.d.emit(line); err != nil {
		return nil, fmt.Errorf("publishing the call: %w", err)
	}
	select {
	case a := <-ch:
		return a.value, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func callerString(id peer.ID) string {
	if id == "" {
		return ""
	}
	return peerString(id)
}

// toJSON writes a value in bridge form with reference handles.
func (k *kernelState) toJSON(v any) (any, error) {
	switch x := v.(type) {
	case *endpoint.Ref:
		k.mu.Lock()
		defer k.mu.Unlock()
		h, ok := k.refKeys[x.String()]
		if !ok {
			k.nextRef++
			h = "ref:" + strconv.FormatUint(k.nextRef, 10)
			k.refKeys[x.String()] = h
			k.refs[h] = x
		}
		return map[string]any{"@ref": h}, nil
	case *daemonObject:
		return map[string]any{"@ref": x.id}, nil
	case endpoint.Handler:
		return nil, fmt.Errorf("a Go object that is not the daemon's")
	case *endpoint.Promise:
		return map[string]any{"@promise": "unsupported"}, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = k.toJSON(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case smallcaps.Record:
		out := make(map[string]any, len(x))
		for _, f := range x {
			j, err := k.toJSON(f.Value)
			if err != nil {
				return nil, err
			}
			out[f.Key] = j
		}
		if len(x) == 1 && strings.HasPrefix(x[0].Key, "@") {
			return map[string]any{"@record": out}, nil
		}
		return out, nil
	}
	return smallcaps.ToJSON(v)
}

// fromJSON reads a bridge value (from encoding/json) with reference
// handles.
func (k *kernelState) fromJSON(j any) (any, error) {
	switch x := j.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = k.fromJSON(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		if h, ok := x["@ref"]; ok && len(x) == 1 {
			s, _ := h.(string)
			k.mu.Lock()
			defer k.mu.Unlock()
			if r := k.refs[s]; r != nil {
				return r, nil
			}
			if o := k.objects[s]; o != nil {
				return o, nil
			}
			return nil, fmt.Errorf("%w: reference %q", ErrUnknownHandle, s)
		}
		if len(x) == 1 {
			for key := range x {
				if strings.HasPrefix(key, "@") {
					return smallcaps.FromJSON(x)
				}
			}
		}
		keys := make([]string, 0, len(x))
		for key := range x {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		out := make(smallcaps.Record, 0, len(x))
		for _, key := range keys {
			v, err := k.fromJSON(x[key])
			if err != nil {
				return nil, err
			}
			out = append(out, smallcaps.Field{Key: key, Value: v})
		}
		return out, nil
	}
	return smallcaps.FromJSON(j)
}

// decodeBridge parses raw bridge JSON ("" or absent is undefined).
func (k *kernelState) decodeBridge(field string, raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return smallcaps.Undefined{}, nil
	}
	var j any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&j); err != nil {
		return nil, fieldError(field, "%v", err)
	}
	v, err := k.fromJSON(numbersToFloat(j))
	if err != nil {
		return nil, fieldError(field, "%v", err)
	}
	return v, nil
}

// numbersToFloat turns json.Number into float64 (the bridge's numbers).
func numbersToFloat(j any) any {
	switch x := j.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbersToFloat(x[i])
		}
	case map[string]any:
		for key := range x {
			x[key] = numbersToFloat(x[key])
		}
	}
	return j
}

type kernelAnswer struct {
	Event  string          `json:"event"`
	ID     json.RawMessage `json:"id,omitempty"`
	Object string          `json:"object,omitempty"`
	URL    string          `json:"url,omitempty"`
	Call   string          `json:"call,omitempty"`
	Ref    string          `json:"ref,omitempty"`
	Value  any             `json:"value,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// kernelOp runs export, resolve, redeem or call; redeem and call wait for
// the peer (until ctx ends).
func (d *Daemon) kernelOp(ctx context.Context, r request) (any, error) {
	if d.ep == nil {
		return nil, ErrNoKernel
	}
	k := d.kernel
	switch r.Op {
	case "export":
		name := r.Name
		if name == "" {
			name = strconv.FormatUint(k.next(), 10)
		}
		o := k.object(d, name, r.Iface)
		url, err := d.ep.ExportNamed(name, o)
		if err != nil {
			return nil, err
		}
		return kernelAnswer{Event: "exported", ID: r.ID, Object: o.id, URL: url}, nil
	case "resolve":
		var a callAnswer
		switch {
		case r.Error != "":
			a.err = &smallcaps.Error{Name: "Error", Message: r.Error}
		default:
			v, err := k.decodeBridge("value", r.Value)
			if err != nil {
				return nil, err
			}
			if r.Rejected {
				a.err = &endpoint.Rejection{Value: v}
			} else {
				a.value = v
			}
		}
		k.mu.Lock()
		ch := k.calls[r.Call]
		delete(k.calls, r.Call)
		k.mu.Unlock()
		if ch == nil {
			return nil, fieldError("call", "%v: no call %q is waiting (answered already, or its caller gone)", ErrUnknownHandle, r.Call)
		}
		ch <- a
		return kernelAnswer{Event: "resolved", ID: r.ID, Call: r.Call}, nil
	case "redeem":
		ref, err := d.ep.Redeem(ctx, r.URL)
		if err != nil {
			return nil, err
		}
		h, _ := k.toJSON(ref)
		return kernelAnswer{Event: "redeemed", ID: r.ID, Ref: h.(map[string]any)["@ref"].(string)}, nil
	default: // call
		target, err := k.decodeBridge("ref", json.RawMessage(`{"@ref":`+strconv.Quote(r.Ref)+`}`))
		if err != nil {
			return nil, err
		}
		ref, ok := target.(*endpoint.Ref)
		if !ok {
			return nil, fieldError("ref", "%q is this daemon's own object; call a peer's reference", r.Ref)
		}
		var args []any
		if len(r.Args) > 0 {
			v, err := k.decodeBridge("args", r.Args)
			if err != nil {
				return nil, err
			}
			if args, ok = v.([]any); !ok {
				return nil, fieldError("args", "want an array")
			}
		}
		v, err := ref.Call(ctx, r.Method, args...)
		var rej *endpoint.Rejection
		if errors.As(err, &rej) {
			jv, jerr := k.toJSON(rej.Value)
			if jerr != nil {
				jv = nil
			}
			return kernelAnswer{Event: "rejected", ID: r.ID, Value: jv, Error: rej.Error()}, nil
		}
		if err != nil {
			return nil, err
		}
		jv, err := k.toJSON(v)
		if err != nil {
			return nil, err
		}
		return kernelAnswer{Event: "result", ID: r.ID, Value: jv}, nil
	}
}

// object returns the daemon object exported under name, making it on
// first use (iface "" means the name). After a restart the endpoint binds
// every name exported before (endpoint.Options.Bind), so calls to it
// arrive as events before the client exports it again.
func (k *kernelState) object(d *Daemon, name, iface string) *daemonObject {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := "obj:" + name
	if o := k.objects[id]; o != nil {
		return o
	}
	if iface == "" {
		iface = name
	}
	o := &daemonObject{d: d, id: id, iface: iface}
	k.objects[id] = o
	return o
}

func (k *kernelState) next() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nextID++
	return k.nextID
}

// kernelAsync reports whether a stdio op is answered later (it waits for
// a peer): redeem and call.
func kernelAsync(op string) bool { return op == "redeem" || op == "call" }
