package interop

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/endpoint"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
	"github.com/ocapnet/ocapnet/transport"
)

// Kernel-layer interop with the Go endpoint package: the JavaScript
// endpoint (interop/endo/endpoint.mjs, @endo/marshal) against
// endpoint.Endpoint, through its API only.

// goEP is a Go endpoint on a data directory, restartable.
type goEP struct {
	t      *testing.T
	dir    string
	listen string // "/ip4/127.0.0.1/tcp/PORT" once started
	ep     *endpoint.Endpoint
}

func startGoEP(t *testing.T, dir, listen string) *goEP {
	g := &goEP{t: t, dir: dir, listen: listen}
	g.start(nil)
	t.Cleanup(g.stop)
	return g
}

// start starts the endpoint on g.dir and g.listen with objects bound by
// name before any inbound message.
func (g *goEP) start(objects map[string]endpoint.Handler) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ep, err := endpoint.Start(ctx, node.Options{Dir: g.dir, AckTimeout: time.Second,
		Transport: transport.Config{ListenAddrs: []string{g.listen}, ReconnectBaseDelay: 50 * time.Millisecond,
			ReconnectMaxDelay: 500 * time.Millisecond, WakeInterval: -1}}, endpoint.Options{Objects: objects})
	if err != nil {
		g.t.Fatal(err)
	}
	g.ep = ep
	a := tcpOnly(g.t, ep.Node().ListenAddrs())
	g.listen = a[:strings.Index(a, "/p2p/")]
}

func (g *goEP) stop() {
	if g.ep == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.ep.Stop(ctx); err != nil {
		g.t.Error(err)
	}
	g.ep = nil
}

func (g *goEP) addr() string { return g.listen + "/p2p/" + g.ep.PeerID().String() }

// goThing is the Go object of these tests, with the methods of
// goTestObject; each call's arguments go to seen.
type goThing struct {
	seen        chan []any
	release     chan struct{}
	releaseOnce sync.Once
}

func newGoThing() *goThing {
	return &goThing{seen: make(chan []any, 100), release: make(chan struct{})}
}

func (g *goThing) releaseHold() { g.releaseOnce.Do(func() { close(g.release) }) }

func (g *goThing) handler() endpoint.Handler {
	return endpoint.Named("GoThing", endpoint.Methods{
		"echo": func(_ context.Context, a []any) (any, error) { g.seen <- a; return a[0], nil },
		"add": func(_ context.Context, a []any) (any, error) {
			g.seen <- a
			x, ok1 := a[0].(*big.Int)
			y, ok2 := a[1].(*big.Int)
			if ok1 && ok2 {
				return new(big.Int).Add(x, y), nil
			}
			fx, ok1 := a[0].(float64)
			fy, ok2 := a[1].(float64)
			if ok1 && ok2 {
				return fx + fy, nil
			}
			return nil, &smallcaps.Error{Name: "TypeError", Message: "Cannot mix BigInt and other types, use explicit conversions"}
		},
		"fail": func(_ context.Context, a []any) (any, error) {
			g.seen <- a
			return nil, &smallcaps.Error{Name: "TypeError", Message: a[0].(string)}
		},
		"callBack": func(ctx context.Context, a []any) (any, error) {
			g.seen <- a
			ref, ok := a[0].(*endpoint.Ref)
			if !ok {
				return nil, fmt.Errorf("callBack: %T is not a reference", a[0])
			}
			return ref.Call(ctx, a[1].(string), a[2:]...)
		},
		"hold": func(ctx context.Context, a []any) (any, error) {
			g.seen <- a
			select {
			case <-g.release:
				return "held", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
}

func (g *goThing) expectSeen(t *testing.T, want string) []any {
	t.Helper()
	select {
	case a := <-g.seen:
		if want != "" {
			if got := bridge(t, a); canon(t, mustBridge(t, got)) != canon(t, mustBridge(t, want)) {
				t.Fatalf("Go received %s, want %s", got, want)
			}
		}
		return a
	case <-time.After(20 * time.Second):
		t.Fatalf("the Go object was not called (want %s)", want)
		return nil
	}
}

// epPair is a Go endpoint exporting a goThing under a durable name and a
// JavaScript endpoint.
type epPair struct {
	g                *goEP
	thing            *goThing
	h                endpoint.Handler
	url              string
	js               *jsPeer
	seed             string
	state            string
	jsAddr, jsListen string
}

func newEPPair(t *testing.T) *epPair {
	p := &epPair{seed: randomSeed(t).Hex(), state: filepath.Join(t.TempDir(), "js-state.json"), thing: newGoThing()}
	p.g = startGoEP(t, t.TempDir(), "/ip4/127.0.0.1/tcp/0")
	t.Cleanup(p.thing.releaseHold) // before the endpoint stops
	p.export(t)
	p.startJS(t, "/ip4/127.0.0.1/tcp/0")
	return p
}

func (p *epPair) export(t *testing.T) {
	p.h = p.thing.handler()
	url, err := p.g.ep.ExportNamed("thing", p.h)
	if err != nil {
		t.Fatal(err)
	}
	p.url = url
}

func (p *epPair) startJS(t *testing.T, listen string) {
	p.js = startEndpointJS(t, "--seed", p.seed, "--state", p.state, "--listen", listen)
	p.jsAddr = tcpOnly(t, p.js.ready["addrs"].([]any))
	p.jsListen = p.jsAddr[:strings.Index(p.jsAddr, "/p2p/")]
}

func (p *epPair) jsRedeem(t *testing.T, id, name string) {
	t.Helper()
	p.js.do(map[string]any{"op": "redeem", "id": id, "url": p.url, "name": name, "hints": []string{p.g.addr()}})
	if ev := p.js.nextWith("redeemed", "id", id, 20*time.Second); ev["ok"] != true {
		t.Fatalf("JavaScript could not redeem the Go endpoint's URL: %v", ev)
	}
}

func (p *epPair) jsCall(t *testing.T, id, target, method, args string) map[string]any {
	t.Helper()
	p.js.do(map[string]any{"op": "call", "id": id, "target": target, "method": method, "args": mustBridge(t, args)})
	return p.js.nextWith("result", "id", id, 20*time.Second)
}

// goRedeem has the Go endpoint redeem a URL the JavaScript endpoint issues
// (with its address as a hint).
func (p *epPair) goRedeem(t *testing.T) (*endpoint.Ref, string) {
	t.Helper()
	p.js.do(map[string]any{"op": "issue", "name": "test"})
	url := p.js.next("issued", 10*time.Second)["url"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ref, err := p.g.ep.Redeem(ctx, url+","+p.jsAddr)
	if err != nil {
		t.Fatalf("the Go endpoint could not redeem %s: %v", url, err)
	}
	return ref, url
}

func rejectionError(t *testing.T, err error) *smallcaps.Error {
	t.Helper()
	var rej *endpoint.Rejection
	if !errors.As(err, &rej) || rej.ErrorValue() == nil {
		t.Fatalf("want a rejection with an error, got %v", err)
	}
	return rej.ErrorValue()
}

// JavaScript redeems a URL the Go endpoint issued and calls the Go object;
// the Go endpoint redeems a JavaScript URL and calls the JavaScript object:
// records, bigints, special strings, objects as arguments called back,
// rejections, checked on both sides.
func TestGoEndpointAndJS(t *testing.T) {
	p := newEPPair(t)
	p.jsRedeem(t, "r1", "go")

	rec := `{"a":1.5,"big":{"@bigint":"-7"},"nested":[true,null,{"@undefined":true},{"@number":"NaN"}],"!k":"$v","#h":"é☃"}`
	expectResult(t, p.jsCall(t, "c1", "go", "echo", "["+rec+"]"), true, rec)
	p.thing.expectSeen(t, "["+rec+"]")
	expectResult(t, p.jsCall(t, "c2", "go", "add", `[{"@bigint":"1180591620717411303424"},{"@bigint":"-5"}]`), true, `{"@bigint":"1180591620717411303419"}`)
	p.thing.expectSeen(t, `[{"@bigint":"1180591620717411303424"},{"@bigint":"-5"}]`)
	specials := `["!bang","#hash","$dollar","&amp","-dash","+plus","%pct","'q","",".dot"]`
	expectResult(t, p.jsCall(t, "c3", "go", "echo", "["+specials+"]"), true, specials)
	p.thing.expectSeen(t, "["+specials+"]")

	// JavaScript's object as an argument, called back by Go.
	p.js.do(map[string]any{"op": "call", "id": "c4", "target": "go", "method": "callBack",
		"args": mustBridge(t, `[{"@remotable":{"slot":"test"}},"add",{"@bigint":"20"},{"@bigint":"22"}]`)})
	if ev := p.js.nextWith("called", "method", "add", 20*time.Second); canon(t, ev["args"]) != `[{"@bigint":"20"},{"@bigint":"22"}]` {
		t.Fatalf("JavaScript's object was called with %v", ev["args"])
	}
	expectResult(t, p.js.nextWith("result", "id", "c4", 20*time.Second), true, `{"@bigint":"42"}`)
	a := p.thing.expectSeen(t, "")
	if r, ok := a[0].(*endpoint.Ref); !ok || r.Interface() != "Alleged: TestObject" || r.Peer().String() != p.js.id() {
		t.Fatalf("callBack's argument: %#v", a[0])
	}
	// Go's own object comes back to it as its Handler.
	expectResult(t, p.jsCall(t, "c5", "go", "echo", `[{"@remotable":{"slot":"go"}}]`), true, `{"@remotable":{"slot":"go","iface":"Alleged: presence"}}`)
	if a := p.thing.expectSeen(t, ""); a[0] != p.h {
		t.Fatalf("Go's object came back as %#v, not its handler", a[0])
	}
	expectResult(t, p.jsCall(t, "c6", "go", "fail", `["go says no"]`), false, `{"@error":{"name":"TypeError","message":"go says no"}}`)
	p.thing.expectSeen(t, `["go says no"]`)
	expectResult(t, p.jsCall(t, "c7", "go", "nosuch", `[]`), false, `{"@error":{"name":"TypeError","message":"target has no method \"nosuch\""}}`)

	// Go calls JavaScript.
	ref, url := p.goRedeem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	goRec := smallcaps.Record{{Key: "#h", Value: "é☃"}, {Key: "!k", Value: "$v"}, {Key: "big", Value: bigInt("-7")},
		{Key: "nested", Value: []any{true, nil, smallcaps.Undefined{}, 1.5}}}
	if v, err := ref.Call(ctx, "echo", goRec); err != nil || !smallcaps.Equal(v, goRec) {
		t.Fatalf("echo: %v %v", v, err)
	}
	if ev := p.js.nextWith("called", "method", "echo", 10*time.Second); canon(t, ev["args"]) != canon(t, mustBridge(t, "["+bridge(t, goRec)+"]")) {
		t.Fatalf("JavaScript received %v", ev["args"])
	}
	if v, err := ref.Call(ctx, "add", bigInt("1180591620717411303424"), bigInt("1")); err != nil || !smallcaps.Equal(v, bigInt("1180591620717411303425")) {
		t.Fatalf("add: %v %v", v, err)
	}
	sp := []any{"!bang", "#hash", "$dollar", "&amp", "-dash", "+plus", "%pct", "", ".dot"}
	if v, err := ref.Call(ctx, "echo", sp); err != nil || !smallcaps.Equal(v, sp) {
		t.Fatalf("echo specials: %v %v", v, err)
	}
	// A Go object as the argument, which JavaScript calls back.
	if v, err := ref.Call(ctx, "callBack", p.h, "add", 1.0, 2.0); err != nil || v != 3.0 {
		t.Fatalf("callBack: %v %v", v, err)
	}
	p.thing.expectSeen(t, `[1,2]`)
	if v, err := ref.Call(ctx, "echo", p.h); err != nil || v != p.h {
		t.Fatalf("echo of Go's object: %#v %v", v, err)
	}
	_, err := ref.Call(ctx, "fail", "nope")
	if e := rejectionError(t, err); e.Name != "TypeError" || e.Message != "nope" {
		t.Fatalf("fail: %+v", e)
	}
	_, err = p.g.ep.Redeem(ctx, strings.Replace(url, "ocap:z", "ocap:zz", 1)+","+p.jsAddr)
	var re *endpoint.RedeemError
	if !errors.As(err, &re) || re.Text != "ocapURL has bad object reference" {
		t.Fatalf("bad JavaScript URL: %v", err)
	}
}

// The Go exporter is stopped and started again on its data directory (its
// tables persist; the same incarnation) mid-conversation: the URL is the
// same, JavaScript's reference still reaches the object (bound again by
// Options.Objects), a call JavaScript made while Go was down is answered by
// the next process, the call Go was running when it stopped is rejected
// once by the next process, and JavaScript's URL still redeems to the same
// object, which the new process calls.
func TestGoEndpointExporterRestart(t *testing.T) {
	p := newEPPair(t)
	p.jsRedeem(t, "r1", "go")
	ref, jsURL := p.goRedeem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if v, err := ref.Call(ctx, "echo", "before"); err != nil || v != "before" {
		t.Fatalf("before: %v %v", v, err)
	}
	p.js.do(map[string]any{"op": "call", "id": "h", "target": "go", "method": "hold", "args": []any{}})
	p.thing.expectSeen(t, `[]`)

	oldURL := p.url
	goID := p.g.ep.PeerID().String()
	p.g.stop()
	p.js.do(map[string]any{"op": "call", "id": "d", "target": "go", "method": "echo", "args": []any{"sent while Go is down"}})
	p.js.nextWith("sent", "to", goID, 10*time.Second)
	p.thing = newGoThing()
	t.Cleanup(p.thing.releaseHold)
	p.h = p.thing.handler()
	p.g.start(map[string]endpoint.Handler{"thing": p.h})
	if url, err := p.g.ep.ExportNamed("thing", nil); err != nil || url != oldURL {
		t.Fatalf("the URL after the restart: %s %v, want %s", url, err, oldURL)
	}
	expectResult(t, p.js.nextWith("result", "id", "h", 30*time.Second), false,
		`{"@error":{"name":"Error","message":"[KERNEL:PEER_RESTARTED] the Go endpoint restarted before settling this promise"}}`)
	expectResult(t, p.js.nextWith("result", "id", "d", 30*time.Second), true, `"sent while Go is down"`)
	p.thing.expectSeen(t, `["sent while Go is down"]`)
	expectResult(t, p.jsCall(t, "a", "go", "add", `[{"@bigint":"1"},{"@bigint":"2"}]`), true, `{"@bigint":"3"}`)
	p.thing.expectSeen(t, `[{"@bigint":"1"},{"@bigint":"2"}]`)
	p.jsRedeem(t, "r2", "again")
	expectResult(t, p.jsCall(t, "b", "again", "echo", `[{"@remotable":{"slot":"go"}}]`), true, `{"@remotable":{"slot":"go","iface":"Alleged: presence"}}`)
	if a := p.thing.expectSeen(t, ""); a[0] != p.h {
		t.Fatalf("JavaScript's old reference reached %#v, not the re-bound object", a[0])
	}

	ref2, err := p.g.ep.Redeem(ctx, jsURL+","+p.jsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ref2.Call(ctx, "callBack", p.h, "echo", "round trip"); err != nil || v != "round trip" {
		t.Fatalf("after the restart: %v %v", v, err)
	}
	p.thing.expectSeen(t, `["round trip"]`)
}

// The JavaScript endpoint comes back without its state (a new
// incarnation): the Go endpoint applies kp §8.2: its pending call is
// rejected with ErrPeerRestarted and the kernel's text, the old reference
// is stale, the old JavaScript URL fails, a fresh one works; the Go URL
// still works for the new JavaScript incarnation.
func TestGoEndpointJSNewIncarnation(t *testing.T) {
	p := newEPPair(t)
	p.jsRedeem(t, "r1", "go")
	ref, oldURL := p.goRedeem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pending, err := ref.Send(ctx, "hang")
	if err != nil {
		t.Fatal(err)
	}
	p.js.nextWith("called", "method", "hang", 20*time.Second)

	p.js.cmd.Process.Signal(syscall.SIGKILL)
	<-p.js.done
	os.Remove(p.state)
	p.startJS(t, p.jsListen)
	p.jsRedeem(t, "r2", "go") // JavaScript makes contact
	_, err = pending.Wait(ctx)
	if !errors.Is(err, endpoint.ErrPeerRestarted) {
		t.Fatalf("the pending call: %v, want ErrPeerRestarted", err)
	}
	if e := rejectionError(t, err); e.Message != peerRestartedText {
		t.Fatalf("the pending call's rejection: %+v", e)
	}
	if _, err := ref.Call(ctx, "echo", "stale"); !errors.Is(err, endpoint.ErrStaleRef) {
		t.Fatalf("a call on the old reference: %v, want ErrStaleRef", err)
	}
	_, err = p.g.ep.Redeem(ctx, oldURL+","+p.jsAddr)
	var re *endpoint.RedeemError
	if !errors.As(err, &re) || re.Text != "ocapURL has bad object reference" {
		t.Fatalf("the old JavaScript URL: %v", err)
	}
	ref2, _ := p.goRedeem(t)
	if v, err := ref2.Call(ctx, "echo", "new"); err != nil || v != "new" {
		t.Fatalf("a call to the new incarnation: %v %v", v, err)
	}
	expectResult(t, p.jsCall(t, "a", "go", "echo", `["after"]`), true, `"after"`)
	p.thing.expectSeen(t, `["after"]`)
}
