package endpoint

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// Handler is a Go object that peers can call. HandleCall runs for one
// message at a time per object, in arrival order; its value resolves the
// caller's result, its error (or a panic) rejects it. args and the value
// are Go values as package smallcaps models them, where references appear
// as *Ref (a peer's object), *Promise, or the Handler itself (a Go object
// coming back).
type Handler interface {
	HandleCall(ctx context.Context, method string, args []any) (any, error)
}

// Interfacer may be implemented by a Handler to name its interface: the
// name "Greeter" is sent as "Alleged: Greeter" (kp §6.3). Without it the
// name is "GoObject".
type Interfacer interface {
	Interface() string
}

// MethodFunc is one method of a Methods table.
type MethodFunc func(ctx context.Context, args []any) (any, error)

// Methods is a Handler made of a method table. A call to a method it does
// not have is rejected with a TypeError.
type Methods map[string]MethodFunc

// HandleCall implements Handler.
func (m Methods) HandleCall(ctx context.Context, method string, args []any) (any, error) {
	f, ok := m[method]
	if !ok {
		return nil, &smallcaps.Error{Name: "TypeError", Message: fmt.Sprintf("target has no method %q", method)}
	}
	return f(ctx, args)
}

// named is a Handler with an interface name.
type named struct {
	iface string
	h     Handler
}

func (n *named) HandleCall(ctx context.Context, method string, args []any) (any, error) {
	return n.h.HandleCall(ctx, method, args)
}
func (n *named) Interface() string { return n.iface }

// Named gives h the interface name iface (sent as "Alleged: <iface>").
func Named(iface string, h Handler) Handler { return &named{iface: iface, h: h} }

type callerKey struct{}

// Caller returns the peer whose message a HandleCall is serving ("" for a
// call made in this process).
func Caller(ctx context.Context) peer.ID {
	id, _ := ctx.Value(callerKey{}).(peer.ID)
	return id
}

// Errors. Test with errors.Is; *Rejection and *RedeemError carry details.
var (
	// ErrPeerRestarted: the peer came back with a new incarnation (its
	// state is lost), so the call or redemption can never be answered.
	ErrPeerRestarted = errors.New("endpoint: peer restarted (incarnation changed)")
	// ErrGaveUp: the node gave up delivering to the peer.
	ErrGaveUp = errors.New("endpoint: delivery to the peer given up")
	// ErrRedeemFailed: the issuer refused the URL (RedeemError has its
	// text).
	ErrRedeemFailed = errors.New("endpoint: URL redemption failed")
	// ErrRedeemTimeout: no redeemURLReply within Options.RedeemTimeout.
	ErrRedeemTimeout = errors.New("endpoint: URL redemption timed out")
	// ErrStaleRef: the reference was dropped (its peer restarted or
	// retired it).
	ErrStaleRef = errors.New("endpoint: stale reference")
	// ErrNotPassable: a value cannot be sent to that peer (a reference of
	// a third peer, a Go value smallcaps cannot encode).
	ErrNotPassable = errors.New("endpoint: value not passable")
	// ErrStopped: the endpoint is stopped.
	ErrStopped = errors.New("endpoint: stopped")
	// ErrInvalidOptions: Options that make no sense.
	ErrInvalidOptions = errors.New("endpoint: invalid options")
	// ErrLocalRestart: this endpoint restarted while the promise was
	// pending, so its outcome is lost.
	ErrLocalRestart = errors.New("endpoint: restarted while pending")
)

// Rejection is a rejected result: Value is the rejection value the peer
// sent (usually a *smallcaps.Error), or one made here for a give-up or a
// restart, which then also matches ErrGaveUp or ErrPeerRestarted.
type Rejection struct {
	Value any
	cause error
}

// Error implements error.
func (r *Rejection) Error() string {
	if e, ok := r.Value.(*smallcaps.Error); ok {
		return "rejected: " + e.Error()
	}
	return fmt.Sprintf("rejected: %v", r.Value)
}

// Unwrap returns ErrGaveUp, ErrPeerRestarted or ErrLocalRestart for local
// rejections, and the *smallcaps.Error of a peer's error rejection.
func (r *Rejection) Unwrap() error {
	if r.cause != nil {
		return r.cause
	}
	if e, ok := r.Value.(*smallcaps.Error); ok {
		return e
	}
	return nil
}

// ErrorValue returns the rejection's *smallcaps.Error, or nil when the
// peer rejected with another value.
func (r *Rejection) ErrorValue() *smallcaps.Error {
	e, _ := r.Value.(*smallcaps.Error)
	return e
}

func localRejection(cause error, text string) *Rejection {
	return &Rejection{Value: &smallcaps.Error{Name: "Error", Message: text}, cause: cause}
}

// The texts of kp §8 for local rejections.
const (
	textPeerRestarted   = "[KERNEL:PEER_RESTARTED] Remote peer restarted (incarnation changed)"
	textRedeemRestarted = "Remote peer restarted"
	textObjectDeleted   = "[KERNEL:OBJECT_DELETED] Target object has no owner; it may have been deleted"
	textLocalRestart    = "[KERNEL:PEER_RESTARTED] the Go endpoint restarted before settling this promise"
)

func textGaveUp(id peer.ID) string {
	return fmt.Sprintf("[KERNEL:CONNECTION_LOST] Remote connection lost: %s (max retries reached or non-retryable error)", id)
}

// RedeemError is a redemption the issuer refused, with its text (e.g.
// "ocapURL has bad object reference"). It matches ErrRedeemFailed.
type RedeemError struct{ Text string }

func (e *RedeemError) Error() string { return "endpoint: URL redemption failed: " + e.Text }
func (e *RedeemError) Unwrap() error { return ErrRedeemFailed }

// Ref is a reference to an object (or promise) of a peer, or, after
// redeeming one of this endpoint's own URLs, to a local object.
type Ref struct {
	ep    *Endpoint
	peer  peer.ID
	kind  kernelwire.Kind
	n     uint64 // the peer's allocation number
	epoch uint64 // the peer tables' epoch it belongs to
	iface string
	local *localObj
}

// Peer returns the peer that owns the object ("" for a local one).
func (r *Ref) Peer() peer.ID { return r.peer }

// Interface returns the interface name the peer gave, e.g. "Alleged:
// greeter" ("" for a reference got from Redeem: a redeemURLReply carries
// none).
func (r *Ref) Interface() string { return r.iface }

// String names the reference as the peer wrote it when it sent it.
func (r *Ref) String() string {
	if r.local != nil {
		return "local:" + r.local.key
	}
	return fmt.Sprintf("%s:r%c+%d", r.peer, r.kind, r.n)
}

// Promise is a promise: one made here with NewPromise (which Go settles
// with Resolve or Reject and may pass to peers, kp §4.1), one a peer sent
// (settled when the peer sends its resolution: a JavaScript kernel never
// does for promises it passes as data, K1), or a result.
type Promise struct {
	mu      sync.Mutex
	done    chan struct{}
	settled bool
	value   any
	err     error
	subs    []func() // called once settled (endpoints that exported it)

	// result: a call's result or a redemption, settled only by the
	// endpoint.
	result bool
	// A local promise's key in the endpoints that exported it.
	key string
	// A peer's promise: who and its number.
	ep    *Endpoint
	peer  peer.ID
	n     uint64
	epoch uint64
}

// NewPromise returns an unsettled local promise.
func NewPromise() *Promise { return &Promise{done: make(chan struct{})} }

func newRemotePromise(ep *Endpoint, id peer.ID, n, epoch uint64) *Promise {
	return &Promise{done: make(chan struct{}), ep: ep, peer: id, n: n, epoch: epoch}
}

// Resolve fulfils a local promise with v. It reports false if the promise
// was already settled or is not local.
func (p *Promise) Resolve(v any) bool { return p.local() && p.settle(v, nil) }

// Reject rejects a local promise with err (sent as an Error). It reports
// false if the promise was already settled or is not local.
func (p *Promise) Reject(err error) bool {
	return p.local() && p.settle(nil, &Rejection{Value: errorValue(err)})
}

func (p *Promise) local() bool { return !p.result && p.peer == "" }

func newResult() *Promise { return &Promise{done: make(chan struct{}), result: true} }

func (p *Promise) settle(v any, err error) bool {
	p.mu.Lock()
	if p.settled {
		p.mu.Unlock()
		return false
	}
	p.settled, p.value, p.err = true, v, err
	subs := p.subs
	p.subs = nil
	close(p.done)
	p.mu.Unlock()
	for _, f := range subs {
		f()
	}
	return true
}

// onSettle calls f once p is settled (at once if it is).
func (p *Promise) onSettle(f func()) {
	p.mu.Lock()
	if !p.settled {
		p.subs = append(p.subs, f)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	f()
}

// Wait waits until p is settled or ctx ends. A rejection is a *Rejection.
func (p *Promise) Wait(ctx context.Context) (any, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.value, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed once p is settled.
func (p *Promise) Done() <-chan struct{} { return p.done }

// Settled returns p's outcome and whether it is settled.
func (p *Promise) Settled() (v any, err error, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.value, p.err, p.settled
}

// Peer returns the peer that decides a promise it sent ("" for a local
// one or a result).
func (p *Promise) Peer() peer.ID { return p.peer }

// errorValue turns a Go error into the value sent as a rejection.
func errorValue(err error) any {
	if r, ok := err.(rejectionError); ok {
		return r.v
	}
	var se *smallcaps.Error
	if errors.As(err, &se) {
		return se
	}
	var rej *Rejection
	if errors.As(err, &rej) {
		return rej.Value
	}
	return &smallcaps.Error{Name: "Error", Message: err.Error()}
}
