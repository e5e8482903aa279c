package endpoint

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// call is one message for a local object.
type call struct {
	from   peer.ID // "" for a local call
	result uint64  // the peer's result promise (rp+K), 0 for none
	method string
	args   []any
	local  *Promise // a local call's result
}

// mailbox runs an object's calls one at a time, in arrival order (kp §4.5,
// §10 MUST 8), on a goroutine that exists while calls are queued.
type mailbox struct {
	mu      sync.Mutex
	queue   []call
	running bool
}

// deliver queues c for o. Called without mu.
func (ep *Endpoint) deliver(o *localObj, c call) {
	o.box.mu.Lock()
	o.box.queue = append(o.box.queue, c)
	if o.box.running {
		o.box.mu.Unlock()
		return
	}
	o.box.running = true
	o.box.mu.Unlock()
	if !ep.goRun(func() { ep.drain(o) }) {
		o.box.mu.Lock()
		o.box.running = false
		o.box.mu.Unlock()
	}
}

func (ep *Endpoint) drain(o *localObj) {
	for {
		o.box.mu.Lock()
		if len(o.box.queue) == 0 || ep.ctx.Err() != nil {
			o.box.running = false
			o.box.queue = nil
			o.box.mu.Unlock()
			return
		}
		c := o.box.queue[0]
		o.box.queue = o.box.queue[1:]
		o.box.mu.Unlock()
		ep.run(o, c)
	}
}

// run calls the handler: its value resolves the result, its error or panic
// rejects it (kp §10 MUST 2).
func (ep *Endpoint) run(o *localObj, c call) {
	ctx := context.WithValue(ep.ctx, callerKey{}, c.from)
	v, err := safeCall(ctx, o.h, c.method, c.args)
	if c.local != nil {
		if err != nil {
			c.local.settle(nil, &Rejection{Value: errorValue(err)})
		} else {
			c.local.settle(v, nil)
		}
		return
	}
	if c.result == 0 {
		return
	}
	ep.resolveInbound(c.from, c.result, v, err)
}

func safeCall(ctx context.Context, h Handler, method string, args []any) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &smallcaps.Error{Name: "Error", Message: fmt.Sprintf("panic in Go method %q: %v", method, r)}
		}
	}()
	return h.HandleCall(ctx, method, args)
}

// resolveInbound settles the peer's result promise n with a handler's
// outcome.
func (ep *Endpoint) resolveInbound(from peer.ID, n uint64, v any, err error) {
	ep.mu.Lock()
	t := ep.tab(from)
	ep.mu.Unlock()
	p := kernelwire.OutRef(kernelwire.Promise, kernelwire.Remote, n)
	if err != nil {
		ep.sendResolution(t, p, errorValue(err), true)
		return
	}
	ep.sendResolution(t, p, v, false)
}

// callLocal is a call on a local object through a Ref (a URL of this
// endpoint redeemed here).
func (ep *Endpoint) callLocal(o *localObj, method string, args []any) (*Promise, error) {
	res := newResult()
	ep.deliver(o, call{method: method, args: args, local: res})
	return res, nil
}
