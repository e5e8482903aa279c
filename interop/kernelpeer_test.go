package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/ocapurl"
	"github.com/ocapnet/ocapnet/smallcaps"
	"github.com/ocapnet/ocapnet/transport"
)

// rawKernel plays the Go side of the kernel layer (kernel-protocol.md, kp)
// for one JavaScript peer with frames made by hand from node.Node,
// kernelwire and smallcaps: an export table (Go's objects, numbered by Go),
// an import table (the peer's objects, numbered by it), the sign rule, a
// fresh result promise per call, the results the peer asks for resolved
// exactly once, and kp §8.2 when the peer's incarnation changes. Every frame
// goes through kernelwire.EncodeOutgoing with the tables as its State, so a
// poison frame fails the test instead of reaching JavaScript. It is a test
// stand-in for the endpoint package, in memory only.
//
// Values carry slots in a form internal to the test: "go:o:N" for Go's
// object N, "js<E>:o:M" / "js<E>:p:M" for the peer's allocation M during its
// incarnation E (counted from 1), so that a reference kept across a peer
// restart is refused instead of naming whatever the new incarnation numbers M.
type rawKernel struct {
	t    *testing.T
	g    *goNode
	dir  string
	peer peer.ID
	hint string

	mu        sync.Mutex
	epoch     int
	objects   map[uint64]*goObject // Go's exports
	oids      map[string]uint64
	imports   map[string]bool // wire refs "ro-M"/"rp-M" Go holds, as Go sends them
	nextObj   uint64
	nextProm  uint64
	fresh     map[uint64]bool           // Go promises allocated for a message not yet sent
	calls     map[uint64]chan outcome   // Go's pending calls, by result promise
	toResolve map[uint64]bool           // the peer's result promises Go must resolve (false: resolved)
	redeeming map[string]chan redeemOut // by reply key
	awaiting  map[string]bool           // reply keys the peer waits for
	nextKey   int
	stopped   bool
	wg        sync.WaitGroup
}

// goObject is a Go export: methods run one at a time, in arrival order.
type goObject struct {
	iface   string
	methods map[string]func(args []any) (any, error)
	queue   chan func()
}

type outcome struct {
	value    any
	rejected bool
}

type redeemOut struct {
	ref smallcaps.Remotable
	err error
}

// errPeerRestarted and errStaleImport are the helper's kp §8.2 outcomes.
var (
	errPeerRestarted = errors.New("remote peer restarted") // JavaScript says "Remote peer restarted"
	errStaleImport   = errors.New("import from an earlier incarnation of the peer")
)

const peerRestartedText = "[KERNEL:PEER_RESTARTED] Remote peer restarted (incarnation changed)"

func newRawKernel(t *testing.T, dir, keySeed string, listen []string) *rawKernel {
	k := &rawKernel{t: t, dir: dir, epoch: 1, objects: map[uint64]*goObject{}, oids: map[string]uint64{}, imports: map[string]bool{},
		fresh: map[uint64]bool{}, calls: map[uint64]chan outcome{}, toResolve: map[uint64]bool{},
		redeeming: map[string]chan redeemOut{}, awaiting: map[string]bool{}}
	k.g = startGoDirHooks(t, dir, keySeed, k.onMessage, k.onEvent, listen)
	t.Cleanup(k.stop)
	return k
}

// stopNode stops the Go node (its tables stay, as if persisted).
func (k *rawKernel) stopNode() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.g.Stop(ctx); err != nil {
		k.t.Fatal(err)
	}
}

// startNode starts the Go node again on its data directory dir: the same
// identity and incarnation, and the tables it kept.
func (k *rawKernel) startNode(dir string, listen []string) {
	// Frames may arrive before Start returns: they wait for k.mu, and so
	// for k.g to be the new node.
	k.mu.Lock()
	defer k.mu.Unlock()
	k.g = startGoDirHooks(k.t, dir, "", k.onMessage, k.onEvent, listen)
}

func (k *rawKernel) stop() {
	k.mu.Lock()
	if !k.stopped {
		k.stopped = true
		for _, o := range k.objects {
			close(o.queue)
		}
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// export adds a Go object with the given methods and returns it as a value.
func (k *rawKernel) export(name string, methods map[string]func(args []any) (any, error)) smallcaps.Remotable {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nextObj++
	o := &goObject{iface: "Alleged: " + name, methods: methods, queue: make(chan func(), 100)}
	k.objects[k.nextObj] = o
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for f := range o.queue {
			f()
		}
	}()
	return smallcaps.Remotable{Slot: fmt.Sprintf("go:o:%d", k.nextObj), Iface: o.iface}
}

// issue returns an OCAP URL for Go's object r (kp §7.2: an unguessable oid).
func (k *rawKernel) issue(r smallcaps.Remotable) string {
	oid, err := ocapurl.NewOID()
	if err != nil {
		k.t.Fatal(err)
	}
	n, _ := strconv.ParseUint(strings.TrimPrefix(r.Slot, "go:o:"), 10, 64)
	k.mu.Lock()
	k.oids[oid] = n
	k.mu.Unlock()
	u, err := ocapurl.Format(ocapurl.URL{OID: oid, Host: k.g.PeerID().String()})
	if err != nil {
		k.t.Fatal(err)
	}
	return u
}

// toWire rewrites internal slots to the refs Go writes (kp §2.3).
func (k *rawKernel) toWire(cd smallcaps.CapData) (smallcaps.CapData, error) {
	out := cd
	out.Slots = make([]string, len(cd.Slots))
	for i, s := range cd.Slots {
		w, err := k.slotToWire(s)
		if err != nil {
			return out, err
		}
		out.Slots[i] = w
	}
	return out, nil
}

func (k *rawKernel) slotToWire(s string) (string, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("bad internal slot %q", s)
	}
	if parts[0] == "go" {
		return "r" + parts[1] + "+" + parts[2], nil
	}
	if parts[0] != fmt.Sprintf("js%d", k.epoch) {
		return "", fmt.Errorf("%s: %w", s, errStaleImport)
	}
	return "r" + parts[1] + "-" + parts[2], nil
}

// fromWire rewrites the refs in a frame from the peer to internal slots,
// recording new peer allocations as imports; an unknown "-" ref is an error
// (the JavaScript kernel's "is not an export reference").
func (k *rawKernel) fromWire(ref string) (string, error) {
	r, err := kernelwire.ParseRRef(ref)
	if err != nil {
		return "", err
	}
	if r.AllocatedBy() == kernelwire.Local {
		if r.Kind != kernelwire.Object || k.objects[r.N] == nil {
			return "", fmt.Errorf("%s is not an export reference", ref)
		}
		return fmt.Sprintf("go:o:%d", r.N), nil
	}
	k.imports[r.Inverted().String()] = true
	return fmt.Sprintf("js%d:%c:%d", k.epoch, r.Kind, r.N), nil
}

func (k *rawKernel) decode(cd smallcaps.CapData) (any, error) {
	in := cd
	in.Slots = make([]string, len(cd.Slots))
	for i, s := range cd.Slots {
		w, err := k.fromWire(s)
		if err != nil {
			return nil, err
		}
		in.Slots[i] = w
	}
	return smallcaps.Decode(in)
}

// send validates and sends one kernel message; k.mu is held.
func (k *rawKernel) send(m kernelwire.Message) error {
	method, params, err := kernelwire.EncodeOutgoing(m, k)
	if err != nil {
		return err
	}
	_, err = k.g.Send(context.Background(), k.peer, method, params, k.hint)
	return err
}

// kernelwire.State over the tables (k.mu is held while it is consulted).

func (k *rawKernel) Imported(kind kernelwire.Kind, n uint64) bool {
	return k.imports[kernelwire.OutRef(kind, kernelwire.Remote, n).String()]
}
func (k *rawKernel) CanResolve(p kernelwire.RRef) bool {
	return !p.Plus && k.toResolve[p.N]
}
func (k *rawKernel) FreshResult(n uint64) bool       { return k.fresh[n] }
func (k *rawKernel) AwaitingReply(key string) bool   { return k.awaiting[key] }
func (k *rawKernel) DroppedImport(n uint64) bool     { return false }
func (k *rawKernel) PeerDroppedExport(n uint64) bool { return false }
func (k *rawKernel) connect(p peer.ID, hint string) {
	k.mu.Lock()
	k.peer, k.hint = p, hint
	k.mu.Unlock()
}
func (k *rawKernel) currentEpoch() int { k.mu.Lock(); defer k.mu.Unlock(); return k.epoch }
func (k *rawKernel) wireOf(r smallcaps.Remotable) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	w, _ := k.slotToWire(r.Slot)
	return w
}

// redeem sends redeemURL for a URL the peer issued and waits for the reply
// (kp §7.4).
func (k *rawKernel) redeem(ctx context.Context, url string) (smallcaps.Remotable, error) {
	k.mu.Lock()
	k.nextKey++
	key := strconv.Itoa(k.nextKey)
	ch := make(chan redeemOut, 1)
	k.redeeming[key] = ch
	err := k.send(&kernelwire.RedeemURL{URL: url, ReplyKey: key})
	k.mu.Unlock()
	if err != nil {
		return smallcaps.Remotable{}, err
	}
	select {
	case r := <-ch:
		return r.ref, r.err
	case <-ctx.Done():
		return smallcaps.Remotable{}, ctx.Err()
	}
}

// call sends method(args) to the peer's object target with a fresh rp+N
// and waits for the notify that settles it.
func (k *rawKernel) call(ctx context.Context, target smallcaps.Remotable, method string, args ...any) (outcome, error) {
	ch, err := k.callAsync(target, method, args...)
	if err != nil {
		return outcome{}, err
	}
	select {
	case o := <-ch:
		return o, nil
	case <-ctx.Done():
		return outcome{}, ctx.Err()
	}
}

func (k *rawKernel) callAsync(target smallcaps.Remotable, method string, args ...any) (chan outcome, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	tw, err := k.slotToWire(target.Slot)
	if err != nil {
		return nil, err
	}
	tref, err := kernelwire.ParseRRef(tw)
	if err != nil {
		return nil, err
	}
	if args == nil {
		args = []any{}
	}
	cd, err := smallcaps.Encode([]any{method, args})
	if err != nil {
		return nil, err
	}
	if cd, err = k.toWire(cd); err != nil {
		return nil, err
	}
	k.nextProm++
	n := k.nextProm
	k.fresh[n] = true
	defer delete(k.fresh, n)
	result := kernelwire.OutRef(kernelwire.Promise, kernelwire.Local, n)
	ch := make(chan outcome, 1)
	k.calls[n] = ch
	if err := k.send(&kernelwire.Send{Target: tref, Methargs: cd, Result: &result}); err != nil {
		delete(k.calls, n)
		return nil, err
	}
	return ch, nil
}

// resolve settles the peer's result promise n (Go decides it) with v, or a
// rejection when err is not nil; k.mu is not held.
func (k *rawKernel) resolve(n uint64, v any, err error) {
	rejected := err != nil
	if rejected {
		var se *smallcaps.Error
		if !errors.As(err, &se) {
			se = &smallcaps.Error{Name: "Error", Message: err.Error()}
		}
		v = se
	}
	cd, encErr := smallcaps.Encode(v)
	k.mu.Lock()
	defer k.mu.Unlock()
	if encErr == nil {
		cd, encErr = k.toWire(cd)
	}
	if encErr != nil {
		// A value Go cannot send still settles the promise.
		rejected = true
		cd, _ = smallcaps.Encode(smallcaps.Error{Name: "Error", Message: encErr.Error()})
	}
	if !k.toResolve[n] {
		return // the peer restarted meanwhile
	}
	if err := k.send(&kernelwire.Notify{Resolutions: []kernelwire.Resolution{{
		Promise: kernelwire.OutRef(kernelwire.Promise, kernelwire.Remote, n), Rejected: rejected, Data: cd}}}); err != nil && !errors.Is(err, node.ErrStopped) {
		k.t.Errorf("resolving rp-%d: %v", n, err)
	}
	k.toResolve[n] = false
}

// onMessage applies one frame from the peer (kp §3).
func (k *rawKernel) onMessage(m node.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if m.From != k.peer {
		return nil
	}
	msg, err := kernelwire.Decode(m.Method, m.Params)
	if err != nil {
		k.t.Errorf("undecodable frame from JavaScript: %s %s: %v", m.Method, m.Params, err)
		return nil
	}
	switch msg := msg.(type) {
	case *kernelwire.Send:
		if msg.Target.AllocatedBy() != kernelwire.Local || msg.Target.Kind != kernelwire.Object || k.objects[msg.Target.N] == nil {
			k.t.Errorf("message to %v, not a Go object", msg.Target)
			return nil
		}
		obj := k.objects[msg.Target.N]
		var n uint64
		if msg.Result != nil {
			if msg.Result.AllocatedBy() != kernelwire.Remote || msg.Result.Kind != kernelwire.Promise {
				k.t.Errorf("result %v is not the peer's promise", msg.Result)
				return nil
			}
			n = msg.Result.N
			k.imports[msg.Result.Inverted().String()] = true
			k.toResolve[n] = true
		}
		v, err := k.decode(msg.Methargs)
		var method string
		var args []any
		if err == nil {
			ma, _ := v.([]any)
			if len(ma) == 2 {
				method, _ = ma[0].(string)
				args, _ = ma[1].([]any)
			}
		}
		if !k.stopped {
			obj.queue <- func() {
				f := obj.methods[method]
				switch {
				case err != nil:
				case f == nil:
					err = &smallcaps.Error{Name: "TypeError", Message: fmt.Sprintf("no method %q", method)}
				default:
					v, err = callSafely(f, args)
				}
				if n != 0 {
					k.resolve(n, v, err)
				}
			}
		}
	case *kernelwire.Notify:
		for _, r := range msg.Resolutions {
			if r.Promise.AllocatedBy() != kernelwire.Local || r.Promise.Kind != kernelwire.Promise {
				k.t.Errorf("notify for %v, not a Go promise", r.Promise)
				continue
			}
			ch := k.calls[r.Promise.N]
			if ch == nil {
				continue // an echo, or a result already settled locally
			}
			delete(k.calls, r.Promise.N)
			v, err := k.decode(r.Data)
			if err != nil {
				k.t.Errorf("notify data %+v: %v", r.Data, err)
			}
			ch <- outcome{value: v, rejected: r.Rejected}
		}
	case *kernelwire.RedeemURL:
		reply := &kernelwire.RedeemURLReply{ReplyKey: msg.ReplyKey}
		if u, err := ocapurl.ParseLenient(msg.URL); err != nil {
			reply.Error = err.Error()
		} else if u.Host != k.g.PeerID().String() {
			reply.Error = "ocapURL from a host that's not me"
		} else if n, ok := k.oids[u.OID]; !ok {
			reply.Error = "ocapURL has bad object reference"
		} else {
			reply.OK, reply.Ref = true, kernelwire.OutRef(kernelwire.Object, kernelwire.Local, n)
		}
		k.awaiting[msg.ReplyKey] = true
		if err := k.send(reply); err != nil {
			k.t.Errorf("redeemURLReply: %v", err)
		}
		delete(k.awaiting, msg.ReplyKey)
	case *kernelwire.RedeemURLReply:
		ch := k.redeeming[msg.ReplyKey]
		if ch == nil {
			k.t.Errorf("redeemURLReply for unknown key %q", msg.ReplyKey)
			return nil
		}
		delete(k.redeeming, msg.ReplyKey)
		if !msg.OK {
			ch <- redeemOut{err: errors.New(msg.Error)}
			return nil
		}
		s, err := k.fromWire(msg.Ref.String())
		ch <- redeemOut{ref: smallcaps.Remotable{Slot: s}, err: err}
	default:
		// GC and BOYD: accepted and ignored (kp §10 MAY).
	}
	return nil
}

func callSafely(f func([]any) (any, error), args []any) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f(args)
}

// onEvent applies kp §8.2 when the peer's incarnation changes: its imports
// are dropped (later use fails with errStaleImport), Go's pending calls are
// rejected with the PEER_RESTARTED text and pending redemptions fail, and
// Go forgets the results it owed the old incarnation.
func (k *rawKernel) onEvent(e node.Event) {
	if g, ok := e.(node.GaveUp); ok && g.Peer == k.peer && errors.Is(g.Reason, transport.ErrPeerRestarted) {
		// Frames meant for the old incarnation name its tables: never
		// resend them (kp §8.2). Discarded, they no longer hold back what
		// Go sends the new incarnation. Not from the event callback itself.
		k.mu.Lock()
		n := k.g
		k.wg.Add(1)
		k.mu.Unlock()
		go func() {
			defer k.wg.Done()
			n.Discard(g.Peer)
		}()
		return
	}
	r, ok := e.(node.PeerRestarted)
	if !ok || r.Peer != k.peer {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.epoch++
	clear(k.imports)
	clear(k.toResolve)
	for n, ch := range k.calls {
		ch <- outcome{value: &smallcaps.Error{Name: "Error", Message: peerRestartedText}, rejected: true}
		delete(k.calls, n)
	}
	for key, ch := range k.redeeming {
		ch <- redeemOut{err: errPeerRestarted}
		delete(k.redeeming, key)
	}
}

// bridge returns v's smallcaps bridge JSON text, for comparing with what the
// JavaScript endpoint reports.
func bridge(t *testing.T, v any) string {
	t.Helper()
	j, err := smallcaps.ToJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
