package interop

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/smallcaps"
)

// Kernel-layer interop (kernel-protocol.md, kp): interop/endo/endpoint.mjs,
// a JavaScript endpoint whose bodies are encoded and decoded by the real
// @endo/marshal 1.8.0, against the Go side played by rawKernel.

// startEndpointJS runs endpoint.mjs; it needs interop/endo's packages as
// well as interop/node's.
func startEndpointJS(t *testing.T, args ...string) *jsPeer {
	t.Helper()
	nodeBinary(t)
	if _, err := os.Stat("endo/node_modules/@endo/marshal"); err != nil {
		msg := "the JavaScript endpoint needs interop/endo's packages; install them with `npm ci --prefix interop/endo` (see docs/INTEROP.md)"
		if os.Getenv("OCAPNET_INTEROP_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return startJSScript(t, "endo/endpoint.mjs", args...)
}

// nextWith returns the next event of the given kind whose key field is val,
// failing on a "poison" or "error" event on the way.
func (p *jsPeer) nextWith(event, key string, val any, d time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-p.events:
			if m["event"] == "poison" || m["event"] == "error" {
				p.t.Fatalf("JavaScript endpoint reported %v", m)
			}
			if m["event"] == event && m[key] == val {
				return m
			}
		case <-p.done:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.t.Fatalf("JavaScript endpoint exited waiting for %q %s=%v; stderr:\n%s", event, key, val, p.stderr.String())
		case <-deadline:
			p.t.Fatalf("no %q event with %s=%v from the JavaScript endpoint within %v", event, key, val, d)
		}
	}
}

// canon rewrites a JSON value with sorted object keys, for comparing bridge
// trees.
func canon(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(x)
	return string(b)
}

func mustBridge(t *testing.T, s string) any {
	t.Helper()
	var j any
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func bigInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

// goTestObject is the Go export the tests call: echo, add (bigints or
// numbers), fail (a TypeError), callBack(obj, method, ...args) (calls obj
// and resolves with its answer), hold (waits for release). Each call's
// arguments are sent on seen.
func goTestObject(k *rawKernel, seen chan<- []any, release <-chan struct{}) smallcaps.Remotable {
	return k.export("GoThing", map[string]func([]any) (any, error){
		"echo": func(a []any) (any, error) { seen <- a; return a[0], nil },
		"add": func(a []any) (any, error) {
			seen <- a
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
		"fail": func(a []any) (any, error) {
			seen <- a
			return nil, &smallcaps.Error{Name: "TypeError", Message: a[0].(string)}
		},
		"callBack": func(a []any) (any, error) {
			seen <- a
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			o, err := k.call(ctx, a[0].(smallcaps.Remotable), a[1].(string), a[2:]...)
			if err != nil {
				return nil, err
			}
			if o.rejected {
				return nil, o.value.(*smallcaps.Error)
			}
			return o.value, nil
		},
		"hold": func(a []any) (any, error) { seen <- a; <-release; return "held", nil },
	})
}

// kernelPair starts a Go side and a JavaScript endpoint that know each
// other's addresses.
type kernelPair struct {
	k           *rawKernel
	js          *jsPeer
	jsID        peer.ID
	seed        string
	keySeed     string // the Go side's
	state       string
	jsListen    string
	goAddr      string
	jsAddr      string
	seen        chan []any
	release     chan struct{}
	releaseOnce sync.Once
	goObj       smallcaps.Remotable
}

func newKernelPair(t *testing.T) *kernelPair {
	p := &kernelPair{seed: randomSeed(t).Hex(), keySeed: randomSeed(t).Hex(), state: filepath.Join(t.TempDir(), "js-state.json"),
		seen: make(chan []any, 100), release: make(chan struct{})}
	p.k = newRawKernel(t, t.TempDir(), p.keySeed, []string{"/ip4/127.0.0.1/tcp/0"})
	p.goAddr = p.k.g.addr(t, "/tcp/")
	p.goObj = goTestObject(p.k, p.seen, p.release)
	t.Cleanup(p.releaseHold) // before the kernel's cleanup, which waits for its objects
	p.startJS(t, "/ip4/127.0.0.1/tcp/0")
	return p
}

func (p *kernelPair) startJS(t *testing.T, listen string) {
	p.js = startEndpointJS(t, "--seed", p.seed, "--state", p.state, "--listen", listen)
	p.jsAddr = tcpOnly(t, p.js.ready["addrs"].([]any))
	p.jsListen = p.jsAddr[:strings.Index(p.jsAddr, "/p2p/")]
	id, err := peer.Decode(p.js.id())
	if err != nil {
		t.Fatal(err)
	}
	p.jsID = id
	p.k.connect(id, p.jsAddr)
}

// releaseHold lets the Go object's hold calls return.
func (p *kernelPair) releaseHold() {
	p.releaseOnce.Do(func() { close(p.release) })
}

// jsCall has the JavaScript endpoint call target.method(args) (bridge JSON
// text) and returns its result event.
func (p *kernelPair) jsCall(t *testing.T, id, target, method, args string) map[string]any {
	t.Helper()
	p.js.do(map[string]any{"op": "call", "id": id, "target": target, "method": method, "args": mustBridge(t, args)})
	return p.js.nextWith("result", "id", id, 20*time.Second)
}

// jsRedeemGo has the JavaScript endpoint redeem a Go-issued URL as name.
func (p *kernelPair) jsRedeemGo(t *testing.T, id, name string) {
	t.Helper()
	url := p.k.issue(p.goObj)
	p.js.do(map[string]any{"op": "redeem", "id": id, "url": url, "name": name, "hints": []string{p.goAddr}})
	if ev := p.js.nextWith("redeemed", "id", id, 20*time.Second); ev["ok"] != true {
		t.Fatalf("JavaScript could not redeem the Go URL: %v", ev)
	}
}

// goRedeemJS has Go redeem a URL the JavaScript endpoint issues.
func (p *kernelPair) goRedeemJS(t *testing.T) (smallcaps.Remotable, string) {
	t.Helper()
	p.js.do(map[string]any{"op": "issue", "name": "test"})
	url := p.js.next("issued", 10*time.Second)["url"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ref, err := p.k.redeem(ctx, url)
	if err != nil {
		t.Fatalf("Go could not redeem the JavaScript URL %s: %v", url, err)
	}
	return ref, url
}

// lastFrame returns the params of the last frame from JS with the given
// method whose params contain want.
func (p *kernelPair) frameWith(t *testing.T, method, want string) string {
	t.Helper()
	for _, m := range p.k.g.messages() {
		if m.Method == method && strings.Contains(string(m.Params), want) {
			return string(m.Params)
		}
	}
	var all []string
	for _, m := range p.k.g.messages() {
		all = append(all, m.Method+" "+string(m.Params))
	}
	t.Fatalf("no %s frame from JavaScript containing %s; frames:\n%s", method, want, strings.Join(all, "\n"))
	return ""
}

func expectResult(t *testing.T, ev map[string]any, ok bool, want string) {
	t.Helper()
	key := "value"
	if !ok {
		key = "error"
	}
	if ev["ok"] != ok || canon(t, ev[key]) != canon(t, mustBridge(t, want)) {
		t.Fatalf("JavaScript got %v, want ok=%v %s", ev, ok, want)
	}
}

func expectSeen(t *testing.T, seen chan []any, want string) {
	t.Helper()
	select {
	case a := <-seen:
		if got := bridge(t, a); canon(t, mustBridge(t, got)) != canon(t, mustBridge(t, want)) {
			t.Fatalf("Go received %s, want %s", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the Go object was not called (want %s)", want)
	}
}

// JavaScript redeems a Go-issued URL and calls the Go object: records,
// bigints, special strings, an object argument that Go calls back, Go's own
// object returned, a rejection. Both sides check what they received.
func TestJSEndpointCallsGo(t *testing.T) {
	p := newKernelPair(t)
	p.jsRedeemGo(t, "r1", "go")
	// JavaScript stored Go's object as the + ref it received (kp §2.3).
	if f := p.frameWith(t, "redeemURL", p.k.g.PeerID().String()); !strings.HasSuffix(f, `,"1"]`) {
		t.Errorf("first reply key is not \"1\": %s", f)
	}

	rec := `{"a":1.5,"big":{"@bigint":"-7"},"nested":[true,null,{"@undefined":true},{"@number":"NaN"}],"!k":"$v","#h":"é☃"}`
	expectResult(t, p.jsCall(t, "c1", "go", "echo", "["+rec+"]"), true, rec)
	expectSeen(t, p.seen, "["+rec+"]")
	// The body @endo/marshal wrote: record keys sorted and escaped.
	p.frameWith(t, "deliver", `{\"!!k\":\"!$v\",\"!#h\":\"é☃\",\"a\":1.5,\"big\":\"-7\",\"nested\":[true,null,\"#undefined\",\"#NaN\"]}`)

	expectResult(t, p.jsCall(t, "c2", "go", "add", `[{"@bigint":"1180591620717411303424"},{"@bigint":"-5"}]`), true, `{"@bigint":"1180591620717411303419"}`)
	expectSeen(t, p.seen, `[{"@bigint":"1180591620717411303424"},{"@bigint":"-5"}]`)

	specials := `["!bang","#hash","$dollar","&amp","-dash","+plus","%pct","'q","",".dot"]`
	expectResult(t, p.jsCall(t, "c3", "go", "echo", "["+specials+"]"), true, specials)
	expectSeen(t, p.seen, "["+specials+"]")
	p.frameWith(t, "deliver", `[\"echo\",[[\"!!bang\",\"!#hash\",\"!$dollar\",\"!&amp\",\"!-dash\",\"!+plus\",\"!%pct\",\"!'q\",\"\",\".dot\"]]]`)

	// An object argument (JavaScript's own) that Go calls back.
	expectResult(t, p.jsCall(t, "c4", "go", "callBack", `[{"@remotable":{"slot":"test"}},"add",{"@bigint":"20"},{"@bigint":"22"}]`), true, `{"@bigint":"42"}`)
	expectSeen(t, p.seen, `[{"@remotable":{"slot":"js1:o:1","iface":"Alleged: TestObject"}},"add",{"@bigint":"20"},{"@bigint":"22"}]`)
	// The frame carried JavaScript's object as its own allocation (+).
	p.frameWith(t, "deliver", `{"body":"#[\"callBack\",[\"$0.Alleged: TestObject\",\"add\",\"+20\",\"+22\"]]","slots":["ro+1"]}`)

	// Go's own object sent back to it: "ro-1" on the wire. A redeemed
	// reference carries no interface name, so JavaScript's presence is
	// "Alleged: presence" (the iface is only the sender's claim).
	expectResult(t, p.jsCall(t, "c5", "go", "echo", `[{"@remotable":{"slot":"go"}}]`), true, `{"@remotable":{"slot":"go","iface":"Alleged: presence"}}`)
	expectSeen(t, p.seen, `[{"@remotable":{"slot":"go:o:1","iface":"Alleged: presence"}}]`)
	p.frameWith(t, "deliver", `"slots":["ro-1"]`)

	// Rejections: Go's TypeError, and a method Go's object lacks.
	expectResult(t, p.jsCall(t, "c6", "go", "fail", `["go says no"]`), false, `{"@error":{"name":"TypeError","message":"go says no"}}`)
	expectSeen(t, p.seen, `["go says no"]`)
	expectResult(t, p.jsCall(t, "c7", "go", "add", `[1,{"@bigint":"2"}]`), false, `{"@error":{"name":"TypeError","message":"Cannot mix BigInt and other types, use explicit conversions"}}`)
	<-p.seen
	expectResult(t, p.jsCall(t, "c8", "go", "nosuch", `[]`), false, `{"@error":{"name":"TypeError","message":"no method \"nosuch\""}}`)

	// A URL Go did not issue fails with the JavaScript kernel's text.
	p.js.do(map[string]any{"op": "redeem", "id": "bad", "url": "ocap:zBad@" + p.k.g.PeerID().String(), "name": "bad"})
	if ev := p.js.nextWith("redeemed", "id", "bad", 20*time.Second); ev["ok"] != false || ev["error"] != "ocapURL has bad object reference" {
		t.Fatalf("bad URL: %v", ev)
	}
}

// Go redeems a JavaScript-issued URL and calls the JavaScript object with
// the same kinds of values.
func TestGoCallsJSEndpoint(t *testing.T) {
	p := newKernelPair(t)
	ref, url := p.goRedeemJS(t)
	if w := p.k.wireOf(ref); w != "ro-1" {
		t.Fatalf("Go writes the redeemed object as %s, want ro-1", w)
	}
	p.frameWith(t, "redeemURLReply", `[true,"1","ro+1"]`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	call := func(method string, args ...any) outcome {
		t.Helper()
		o, err := p.k.call(ctx, ref, method, args...)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return o
	}

	rec := smallcaps.Record{{Key: "#h", Value: "é☃"}, {Key: "!k", Value: "$v"}, {Key: "big", Value: bigInt("-7")},
		{Key: "nested", Value: []any{true, nil, smallcaps.Undefined{}, 1.5}}}
	if o := call("echo", rec); o.rejected || !smallcaps.Equal(o.value, rec) {
		t.Fatalf("echo: %+v", o)
	}
	if ev := p.js.nextWith("called", "method", "echo", 10*time.Second); canon(t, ev["args"]) != canon(t, mustBridge(t, "["+bridge(t, rec)+"]")) {
		t.Fatalf("JavaScript received %v", ev["args"])
	}

	if o := call("add", bigInt("1180591620717411303424"), bigInt("1")); o.rejected || !smallcaps.Equal(o.value, bigInt("1180591620717411303425")) {
		t.Fatalf("add: %+v", o)
	}
	specials := []any{"!bang", "#hash", "$dollar", "&amp", "-dash", "+plus", "%pct", "", ".dot"}
	if o := call("echo", specials); o.rejected || !smallcaps.Equal(o.value, specials) {
		t.Fatalf("echo specials: %+v", o)
	}
	// JavaScript's reply body, as @endo/marshal wrote it.
	p.frameWith(t, "deliver", `{"body":"#[\"!!bang\",\"!#hash\",\"!$dollar\",\"!&amp\",\"!-dash\",\"!+plus\",\"!%pct\",\"\",\".dot\"]"`)

	// A Go object as the argument, which JavaScript calls back.
	if o := call("callBack", p.goObj, "add", 1.0, 2.0); o.rejected || !smallcaps.Equal(o.value, 3.0) {
		t.Fatalf("callBack: %+v", o)
	}
	expectSeen(t, p.seen, `[1,2]`)
	if o := call("echo", p.goObj); o.rejected || !smallcaps.Equal(o.value, p.goObj) {
		t.Fatalf("echo of a Go object: %+v", o)
	}
	p.frameWith(t, "deliver", `\"$0.Alleged: GoThing\"","slots":["ro-1"]`)

	// Rejections.
	if o := call("fail", "nope"); !o.rejected || !smallcaps.Equal(o.value, &smallcaps.Error{Name: "TypeError", Message: "nope"}) {
		t.Fatalf("fail: %+v", o)
	}
	if o := call("add", 1.0, bigInt("2")); !o.rejected || !smallcaps.Equal(o.value, &smallcaps.Error{Name: "TypeError", Message: "Cannot mix BigInt and other types, use explicit conversions"}) {
		t.Fatalf("add mixed: %+v", o)
	}

	// Bad URLs, answered with the JavaScript kernel's texts (kp §3.5).
	for _, c := range []struct{ url, want string }{
		{strings.Replace(url, "ocap:z", "ocap:zz", 1), "ocapURL has bad object reference"},
		{strings.Replace(url, "ocap:z", "ocap:Q", 1), "Unable to decode multibase string"},
		{"ocap:zAbc@" + p.k.g.PeerID().String(), "ocapURL from a host that's not me"},
	} {
		if _, err := p.k.redeem(ctx, c.url); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("redeem %s: %v, want %q", c.url, err, c.want)
		}
	}
}

// The JavaScript endpoint is killed (SIGKILL) mid-conversation and comes
// back with its state (the same incarnation, kp §8.2 last point): Go keeps
// its tables; a JavaScript call that Go answers while it is down, and a Go
// call sent while it is down, both complete after the restart; the
// references of both sides still work.
func TestJSEndpointRestartSameIncarnation(t *testing.T) {
	p := newKernelPair(t)
	p.jsRedeemGo(t, "r1", "go")
	ref, _ := p.goRedeemJS(t)
	before := p.js.ready["incarnationId"]

	p.js.do(map[string]any{"op": "call", "id": "h", "target": "go", "method": "hold", "args": []any{}})
	expectSeen(t, p.seen, `[]`)
	p.js.cmd.Process.Signal(syscall.SIGKILL)
	<-p.js.done
	p.releaseHold() // Go resolves JavaScript's call while it is down
	pending, err := p.k.callAsync(ref, "echo", "sent while down")
	if err != nil {
		t.Fatal(err)
	}

	p.startJS(t, p.jsListen)
	if p.js.ready["incarnationId"] != before {
		t.Fatalf("the restart changed the JavaScript incarnation")
	}
	expectResult(t, p.js.nextWith("result", "id", "h", 30*time.Second), true, `"held"`)
	select {
	case o := <-pending:
		if o.rejected || o.value != "sent while down" {
			t.Fatalf("Go's call across the restart: %+v", o)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Go's call sent while JavaScript was down was never answered")
	}
	expectResult(t, p.jsCall(t, "a", "go", "add", `[{"@bigint":"1"},{"@bigint":"2"}]`), true, `{"@bigint":"3"}`)
	expectSeen(t, p.seen, `[{"@bigint":"1"},{"@bigint":"2"}]`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if o, err := p.k.call(ctx, ref, "add", 2.0, 3.0); err != nil || o.rejected || o.value != 5.0 {
		t.Fatalf("Go's call after the restart: %+v %v", o, err)
	}
	if e := p.k.currentEpoch(); e != 1 {
		t.Fatalf("Go saw a peer restart (epoch %d)", e)
	}
}

// The JavaScript endpoint comes back without its state: a new incarnation.
// Go applies kp §8.2: its pending call to JavaScript is rejected with the
// PEER_RESTARTED text, the old import is refused locally, the old
// JavaScript URL no longer redeems, and a fresh one does, to a reference
// with the same number as the old one (which is why the imports had to go).
// Go's exports stay valid: JavaScript redeems Go's URL again and calls it.
func TestJSEndpointRestartNewIncarnation(t *testing.T) {
	p := newKernelPair(t)
	p.jsRedeemGo(t, "r1", "go")
	ref, oldURL := p.goRedeemJS(t)
	pending, err := p.k.callAsync(ref, "hang")
	if err != nil {
		t.Fatal(err)
	}
	p.js.nextWith("called", "method", "hang", 20*time.Second)
	before := p.js.ready["incarnationId"]

	p.js.cmd.Process.Signal(syscall.SIGKILL)
	<-p.js.done
	os.Remove(p.state)
	p.startJS(t, p.jsListen)
	if p.js.ready["incarnationId"] == before {
		t.Fatal("JavaScript kept its incarnation without its state")
	}
	// JavaScript makes contact: it redeems Go's URL afresh.
	p.jsRedeemGo(t, "r2", "go")
	select {
	case o := <-pending:
		if !o.rejected || !smallcaps.Equal(o.value, &smallcaps.Error{Name: "Error", Message: peerRestartedText}) {
			t.Fatalf("Go's pending call: %+v", o)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Go's call to the old incarnation was not rejected")
	}
	waitFor(t, 10*time.Second, "Go to drop the old imports", func() bool { return p.k.currentEpoch() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := p.k.call(ctx, ref, "echo", "stale"); !errors.Is(err, errStaleImport) {
		t.Fatalf("call on an import from the old incarnation: %v", err)
	}
	if _, err := p.k.redeem(ctx, oldURL); err == nil || err.Error() != "ocapURL has bad object reference" {
		t.Fatalf("redeeming the old JavaScript URL: %v", err)
	}
	ref2, _ := p.goRedeemJS(t)
	if w := p.k.wireOf(ref2); w != "ro-1" {
		t.Fatalf("the new incarnation's object is %s to Go, want ro-1 (the old number)", w)
	}
	if o, err := p.k.call(ctx, ref2, "echo", "new"); err != nil || o.rejected || o.value != "new" {
		t.Fatalf("call after the restart: %+v %v", o, err)
	}
	expectResult(t, p.jsCall(t, "a", "go", "echo", `["after"]`), true, `"after"`)
	expectSeen(t, p.seen, `["after"]`)
}

// The Go side stops and starts again on its data directory (the same
// identity and incarnation; rawKernel keeps its tables as an endpoint
// persists them) mid-conversation: a JavaScript call Go was still working
// on when it stopped and one made while Go is down both complete, in order
// (one message at a time per object), and the references of both sides
// still work (JavaScript keeps its tables, kp
// §8.1 applies only to a new incarnation).
func TestGoRestartSameIncarnation(t *testing.T) {
	p := newKernelPair(t)
	p.jsRedeemGo(t, "r1", "go")
	ref, _ := p.goRedeemJS(t)
	p.js.do(map[string]any{"op": "call", "id": "h", "target": "go", "method": "hold", "args": []any{}})
	expectSeen(t, p.seen, `[]`)

	listen := p.goAddr[:strings.Index(p.goAddr, "/p2p/")]
	p.k.stopNode()
	p.js.do(map[string]any{"op": "call", "id": "d", "target": "go", "method": "echo", "args": []any{"sent while Go is down"}})
	p.js.nextWith("sent", "to", p.k.g.PeerID().String(), 10*time.Second)
	p.k.startNode(p.k.dir, []string{listen})
	waitFor(t, 30*time.Second, "the call made while Go was down", func() bool { return len(p.k.g.messages()) == 1 })
	p.releaseHold()
	expectResult(t, p.js.nextWith("result", "id", "h", 30*time.Second), true, `"held"`)
	expectResult(t, p.js.nextWith("result", "id", "d", 30*time.Second), true, `"sent while Go is down"`)
	expectSeen(t, p.seen, `["sent while Go is down"]`)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if o, err := p.k.call(ctx, ref, "callBack", p.goObj, "echo", "round trip"); err != nil || o.rejected || o.value != "round trip" {
		t.Fatalf("Go's call after its restart: %+v %v", o, err)
	}
	expectSeen(t, p.seen, `["round trip"]`)
}

// The Go side comes back without its state (a new data directory, the same
// key seed: a new incarnation). The JavaScript endpoint applies kp §8.1 as
// the JavaScript kernel does: it forgets Go's allocations, so its call on
// the old Go reference is rejected with OBJECT_DELETED; it keeps its own, so
// Go's new incarnation can redeem and call a JavaScript object; and its call
// that the old Go never answered stays pending (K3: upstream rejects
// nothing; its callers hang). A fresh Go URL works.
func TestGoRestartNewIncarnation(t *testing.T) {
	p := newKernelPair(t)
	p.jsRedeemGo(t, "r1", "go")
	p.js.do(map[string]any{"op": "call", "id": "h", "target": "go", "method": "hold", "args": []any{}})
	expectSeen(t, p.seen, `[]`)

	listen := p.goAddr[:strings.Index(p.goAddr, "/p2p/")]
	oldID := p.k.g.PeerID()
	p.k.stopNode()
	p.releaseHold() // the old incarnation's answer is lost with it
	p.k.stop()
	p.k = newRawKernel(t, t.TempDir(), p.keySeed, []string{listen})
	if p.k.g.PeerID() != oldID {
		t.Fatalf("the new Go incarnation has another peer ID")
	}
	p.k.connect(p.jsID, p.jsAddr)
	p.seen = make(chan []any, 100)
	p.goObj = goTestObject(p.k, p.seen, p.release)

	// Go makes contact: it redeems a JavaScript URL (JavaScript's own
	// allocations survive its view of Go's restart).
	ref, _ := p.goRedeemJS(t)
	ev := p.js.next("peerRestarted", 10*time.Second)
	if ev["forgotten"] != 1.0 {
		t.Errorf("JavaScript forgot %v Go allocations, want 1 (the object; hold's result is JavaScript's)", ev["forgotten"])
	}
	expectResult(t, p.jsCall(t, "old", "go", "echo", `["to the old Go object"]`), false,
		`{"@error":{"name":"Error","message":"[KERNEL:OBJECT_DELETED] Target object has no owner; it may have been deleted"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if o, err := p.k.call(ctx, ref, "echo", "new Go"); err != nil || o.rejected || o.value != "new Go" {
		t.Fatalf("the new Go's call: %+v %v", o, err)
	}
	p.jsRedeemGo(t, "r2", "go2")
	expectResult(t, p.jsCall(t, "new", "go2", "echo", `["to the new Go object"]`), true, `"to the new Go object"`)
	expectSeen(t, p.seen, `["to the new Go object"]`)

	// K3: JavaScript still waits for hold's result.
	p.js.do(map[string]any{"op": "state"})
	st := p.js.next("state", 10*time.Second)
	calls := st["kernel"].(map[string]any)["calls"].(map[string]any)
	if !strings.Contains(canon(t, calls), `"h"`) {
		t.Fatalf("JavaScript's call to the old Go is no longer pending: %v", calls)
	}
}
