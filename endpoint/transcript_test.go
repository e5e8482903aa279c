package endpoint

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/wire"
)

// The peers of kp §9: the JavaScript kernel and the scripted "Go" peer.
const (
	jsPeerID = "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3"
	goPeerID = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
)

// recLink stands in for the node in transcript tests: it records the
// frames the endpoint sends (a real store holds the tables).
type recLink struct {
	st   *store.Store
	self peer.ID
	inc  string
	mu   sync.Mutex
	seq  uint64
	out  chan node.Outgoing
}

func (l *recLink) SendMessage(_ context.Context, m node.Outgoing) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.out <- m
	return l.seq, nil
}
func (l *recLink) Discard(peer.ID) (int, error)   { return 0, nil }
func (l *recLink) Incarnation(peer.ID) string     { return l.inc }
func (l *recLink) PeerID() peer.ID                { return l.self }
func (l *recLink) Store() *store.Store            { return l.st }
func (l *recLink) outgoing() <-chan node.Outgoing { return l.out }

// transcriptEP is an endpoint on a recLink, as the Go peer of kp §9.
func transcriptEP(t *testing.T, dir string) (*Endpoint, *recLink) {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ep, err := New(Options{Logger: testLogger(), Hints: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	l := &recLink{st: st, self: peer.ID(mustPeer(t, goPeerID)), inc: "js-inc-A", out: make(chan node.Outgoing, 64)}
	if err := ep.attach(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.stop)
	return ep, l
}

func mustPeer(t *testing.T, s string) peer.ID {
	t.Helper()
	id, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// feed hands a captured JS frame to the endpoint, as the node would.
func feed(t *testing.T, ep *Endpoint, frame string) {
	t.Helper()
	m, err := wire.DecodeMessage([]byte(frame))
	if err != nil {
		t.Fatalf("captured frame: %v", err)
	}
	env := m.Envelope
	if err := ep.onNodeMessage(node.Message{From: mustPeer(t, jsPeerID), Seq: env.Seq, Method: env.Method, Params: env.Params}); err != nil {
		t.Fatalf("endpoint refused %s: %v", frame, err)
	}
}

// expect waits for the endpoint's next frame and compares its method and
// params byte for byte with the captured frame's (seq and ack are the
// node's).
func expect(t *testing.T, l *recLink, frame string) {
	t.Helper()
	m, err := wire.DecodeMessage([]byte(frame))
	if err != nil {
		t.Fatalf("captured frame: %v", err)
	}
	select {
	case got := <-l.outgoing():
		if got.To.String() != jsPeerID || got.Method != m.Envelope.Method || string(got.Params) != string(m.Envelope.Params) {
			t.Fatalf("Go sent %s %s\n captured %s %s", got.Method, got.Params, m.Envelope.Method, m.Envelope.Params)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Go sent nothing; captured %s", frame)
	}
}

func quiet(t *testing.T, l *recLink) {
	t.Helper()
	select {
	case got := <-l.outgoing():
		t.Fatalf("Go sent %s %s, want nothing", got.Method, got.Params)
	default:
	}
}

// TestTranscript plays the Go side of kp §9.1–§9.7 against the captured
// JavaScript frames and checks every frame Go sends byte for byte. Two
// edits to the capture: §9.1's URL was shortened in the document (a full
// one is used), and Go's counters are advanced where the scripted peer of
// the capture had allocated more (rp+7 in §9.5, ro+9 in §9.7).
func TestTranscript(t *testing.T) {
	ep, l := transcriptEP(t, t.TempDir())
	ctx := ctxT(t)
	js := mustPeer(t, jsPeerID)
	url := "ocap:zi9hVhX9@" + jsPeerID

	// 9.1 Go redeems a JS URL, calls a method, gets the result.
	type redeemed struct {
		ref *Ref
		err error
	}
	rc := make(chan redeemed, 1)
	go func() { r, err := ep.Redeem(ctx, url); rc <- redeemed{r, err} }()
	expect(t, l, `{"seq":1,"method":"redeemURL","params":["`+url+`","1"]}`)
	feed(t, ep, `{"seq":1,"ack":1,"method":"redeemURLReply","params":[true,"1","ro+1"]}`)
	r := <-rc
	if r.err != nil {
		t.Fatal(r.err)
	}
	greeter := r.ref
	res, err := greeter.Send(ctx, "greet", "Gopher")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, l, `{"seq":2,"ack":1,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"greet\",[\"Gopher\"]]","slots":[]},"result":"rp+1"}]}`)
	feed(t, ep, `{"seq":2,"ack":2,"method":"deliver","params":["notify",[["rp-1",false,{"body":"#\"Hello, Gopher!\"","slots":[]}]]]}`)
	if v, err := res.Wait(ctx); err != nil || v != "Hello, Gopher!" {
		t.Fatalf("9.1 result: %v %v", v, err)
	}

	// 9.2 An object passed as an argument, returned by JS.
	var gotHello []any
	later := NewPromise()
	thing := Named("GoThing", Methods{
		"hello": func(ctx context.Context, args []any) (any, error) {
			gotHello = args
			if Caller(ctx) != js {
				return nil, errors.New("wrong caller")
			}
			return "hi from Go", nil
		},
		"boom": func(context.Context, []any) (any, error) {
			return nil, &smallcaps.Error{Name: "TypeError", Message: "go says no"}
		},
		"later": func(context.Context, []any) (any, error) { return later, nil },
		"takePromise": func(_ context.Context, args []any) (any, error) {
			if _, ok := args[0].(*Promise); !ok {
				return nil, errors.New("not a promise")
			}
			return nil, nil
		},
	})
	res, err = greeter.Send(ctx, "echo", thing)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, l, `{"seq":3,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"echo\",[\"$0.Alleged: GoThing\"]]","slots":["ro+1"]},"result":"rp+2"}]}`)
	feed(t, ep, `{"seq":3,"ack":3,"method":"deliver","params":["notify",[["rp-2",false,{"body":"#\"$0.Alleged: GoThing\"","slots":["ro-1"]}]]]}`)
	if v, err := res.Wait(ctx); err != nil || v != thing {
		t.Fatalf("9.2 result: %#v %v, want the Go object itself", v, err)
	}

	// 9.3 JS calls Go with a bigint and a JS object; Go resolves.
	feed(t, ep, `{"seq":4,"ack":3,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"from JS\",{\"n\":\"+1\",\"o\":\"$0.Alleged: greeter\"}]]","slots":["ro+1"]},"result":"rp+1"}]}`)
	expect(t, l, `{"seq":4,"ack":3,"method":"deliver","params":["notify",[["rp-1",false,{"body":"#\"hi from Go\"","slots":[]}]]]}`)
	if len(gotHello) != 2 || gotHello[0] != "from JS" {
		t.Fatalf("9.3 args %#v", gotHello)
	}
	rec := gotHello[1].(smallcaps.Record)
	o, _ := rec.Get("o")
	if ref, ok := o.(*Ref); !ok || ref.n != greeter.n || ref.Interface() != "Alleged: greeter" {
		t.Fatalf("9.3 o = %#v, want the greeter reference", o)
	}

	// 9.4 A rejected result.
	feed(t, ep, `{"seq":5,"ack":4,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"boom\",[]]","slots":[]},"result":"rp+2"}]}`)
	expect(t, l, `{"seq":5,"method":"deliver","params":["notify",[["rp-2",true,{"body":"#{\"#error\":\"go says no\",\"name\":\"TypeError\"}","slots":[]}]]]}`)

	// 9.5 Resolving to a Go promise, then resolving it; the echo is not
	// answered.
	ep.mu.Lock()
	ep.peers[js].meta.NextPromise = 6
	ep.mu.Unlock()
	feed(t, ep, `{"seq":6,"ack":5,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"later\",[]]","slots":[]},"result":"rp+3"}]}`)
	expect(t, l, `{"seq":6,"method":"deliver","params":["notify",[["rp-3",false,{"body":"#\"&0\"","slots":["rp+7"]}]]]}`)
	later.Resolve(42)
	expect(t, l, `{"seq":7,"method":"deliver","params":["notify",[["rp+7",false,{"body":"#42","slots":[]}]]]}`)
	feed(t, ep, `{"seq":7,"ack":7,"method":"deliver","params":["notify",[["rp-7",false,{"body":"#42","slots":[]}]]]}`)

	// 9.7 JS redeems Go-issued URLs: one succeeds, one fails.
	ep.mu.Lock()
	// The capture's Go peer issued its ninth object under this oid.
	other, _ := ep.registerLocked(Named("Other", Methods{}), "")
	ep.records[other.key] = objRecord{OID: "zGoOpaqueOid123"}
	ep.oids["zGoOpaqueOid123"] = other.key
	ep.peers[js].meta.NextObject = 8
	ep.mu.Unlock()
	quiet(t, l) // nothing answered the echo
	feed(t, ep, `{"seq":8,"ack":7,"method":"redeemURL","params":["ocap:zGoOpaqueOid123@`+goPeerID+`","1"]}`)
	expect(t, l, `{"seq":8,"method":"redeemURLReply","params":[true,"1","ro+9"]}`)
	feed(t, ep, `{"seq":9,"ack":8,"method":"redeemURL","params":["ocap:zBad@`+goPeerID+`","2"]}`)
	expect(t, l, `{"seq":9,"method":"redeemURLReply","params":[false,"2","ocapURL has bad object reference"]}`)

	// 9.6's shape: a JS promise as an argument; Go gets a *Promise it must
	// not wait on (K1), and resolves the result.
	feed(t, ep, `{"seq":10,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"takePromise\",[\"&0\"]]","slots":["rp+4"]},"result":"rp+5"}]}`)
	expect(t, l, `{"seq":10,"method":"deliver","params":["notify",[["rp-5",false,{"body":"#null","slots":[]}]]]}`)
	quiet(t, l)
}

// kp §10 MUST 4: BOYD, GC frames with either sign, notify echoes, nested
// batches and messages without a result are accepted (acknowledged) and
// answered by nothing; GC picks the table by message, not sign (K2).
func TestAcceptsWhatJSSends(t *testing.T) {
	ep, l := transcriptEP(t, t.TempDir())
	js := mustPeer(t, jsPeerID)
	calls := make(chan string, 8)
	obj := Named("X", Methods{"ping": func(_ context.Context, args []any) (any, error) { calls <- "ping"; return "pong", nil }})
	url, err := ep.Export(obj)
	if err != nil {
		t.Fatal(err)
	}
	feed(t, ep, `{"seq":1,"method":"redeemURL","params":["`+strings.ToUpper(url[:4])+url[4:]+`","1"]}`)
	expect(t, l, `{"seq":1,"method":"redeemURLReply","params":[true,"1","ro+1"]}`)
	// No result, a null result: the call runs, nothing is sent.
	feed(t, ep, `{"seq":2,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"ping\",[]]","slots":[]}}]}`)
	feed(t, ep, `{"seq":3,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"ping\",[]]","slots":[]},"result":null}]}`)
	<-calls
	<-calls
	// A nested notify batch for a promise the peer decides, with an object
	// first seen in it.
	feed(t, ep, `{"seq":4,"method":"deliver","params":["notify",[["rp+8",false,{"body":"#\"&0\"","slots":["rp+9"]}],["rp+9",false,{"body":"#\"$0.Alleged: greeter\"","slots":["ro+3"]}]]]}`)
	ep.mu.Lock()
	tab := ep.peers[js]
	p8, p9, o3 := tab.imports[kernelwire.Promise][8], tab.imports[kernelwire.Promise][9], tab.imports[kernelwire.Object][3]
	ep.mu.Unlock()
	if p8 == nil || !p8.Resolved || p9 == nil || !p9.Resolved || o3 == nil || o3.Iface != "Alleged: greeter" {
		t.Fatalf("nested batch: %+v %+v %+v", p8, p9, o3)
	}
	// An echo of a promise Go never had, BOYD, an unknown method's reply.
	feed(t, ep, `{"seq":5,"method":"deliver","params":["notify",[["rp-77",false,{"body":"#1","slots":[]}]]]}`)
	feed(t, ep, `{"seq":6,"method":"deliver","params":["bringOutYourDead"]}`)
	feed(t, ep, `{"seq":7,"method":"redeemURLReply","params":[true,"77","ro+1"]}`)
	// GC with JS's stored sign (K2) and with the receiver's view.
	feed(t, ep, `{"seq":8,"method":"deliver","params":["dropExports",["ro+1"]]}`)
	ep.mu.Lock()
	dropped := tab.exports[kernelwire.Object][1].Dropped
	ep.mu.Unlock()
	if !dropped {
		t.Fatal("dropExports [ro+1] did not mark Go's object 1 dropped")
	}
	feed(t, ep, `{"seq":9,"method":"deliver","params":["retireExports",["ro-1","ro-42"]]}`)
	feed(t, ep, `{"seq":10,"method":"deliver","params":["retireImports",["ro-3"]]}`)
	ep.mu.Lock()
	x1, i3 := tab.exports[kernelwire.Object][1], tab.imports[kernelwire.Object][3]
	ep.mu.Unlock()
	if x1 != nil || i3 != nil {
		t.Fatalf("retire: export 1 %+v, import 3 %+v, want both gone", x1, i3)
	}
	// Undecodable and unknown kinds are accepted, not refused (K4).
	feed(t, ep, `{"seq":11,"method":"deliver","params":["frobnicate",[]]}`)
	feed(t, ep, `{"seq":12,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[1,2","slots":[]},"result":"rp+20"}]}`)
	expect(t, l, `{"seq":12,"method":"deliver","params":["notify",[["rp-20",true,{"body":"#{\"#error\":\"[KERNEL:OBJECT_DELETED] Target object has no owner; it may have been deleted\",\"name\":\"Error\"}","slots":[]}]]]}`)
	quiet(t, l)
}
