package endpoint

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
	"github.com/ocapnet/ocapnet/store"
)

// reopenEP is transcriptEP with the endpoint and store closed by the
// returned function, to start another on the same directory.
func reopenEP(t *testing.T, dir string) (*Endpoint, *recLink, func()) {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := New(Options{Logger: testLogger(), Hints: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	l := &recLink{st: st, self: mustPeer(t, goPeerID), inc: "js-inc-A", out: make(chan node.Outgoing, 64)}
	if err := ep.attach(l); err != nil {
		t.Fatal(err)
	}
	closed := false
	closeFn := func() {
		if !closed {
			closed = true
			ep.stop()
			st.Close()
		}
	}
	t.Cleanup(closeFn)
	return ep, l, closeFn
}

// Every inbound result is resolved exactly once: a redelivered message
// (after a crash between applying it and recording its delivery) is not
// applied again, and a call whose handler had not finished when the
// process stopped is rejected once by the next process, which does not
// resolve again what the first one resolved.
func TestExactlyOnceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ep, l, closeEP := reopenEP(t, dir)
	entered := make(chan string, 4)
	var pings atomic.Int32
	svc := func() Handler {
		m := blocker(entered, nil)
		m["ping"] = func(context.Context, []any) (any, error) { pings.Add(1); return "pong", nil }
		return m
	}
	url, err := ep.ExportNamed("svc", svc())
	if err != nil {
		t.Fatal(err)
	}
	feed(t, ep, `{"seq":1,"method":"redeemURL","params":["`+url+`","1"]}`)
	expect(t, l, `{"seq":1,"method":"redeemURLReply","params":[true,"1","ro+1"]}`)
	ping := `{"seq":2,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"ping\",[]]","slots":[]},"result":"rp+1"}]}`
	feed(t, ep, ping)
	expect(t, l, `{"seq":2,"method":"deliver","params":["notify",[["rp-1",false,{"body":"#\"pong\"","slots":[]}]]]}`)
	// The node hands message 2 again, marked as a possible redelivery.
	if err := ep.onNodeMessage(node.Message{From: mustPeer(t, jsPeerID), Seq: 2, Method: "deliver",
		Params: []byte(`["message","ro-1",{"methargs":{"body":"#[\"ping\",[]]","slots":[]},"result":"rp+1"}]`), Redelivery: true}); err != nil {
		t.Fatal(err)
	}
	// block runs after anything queued before it (one mailbox).
	feed(t, ep, `{"seq":3,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"block\",[]]","slots":[]},"result":"rp+2"}]}`)
	<-entered
	closeEP()
	quiet(t, l)
	if n := pings.Load(); n != 1 {
		t.Fatalf("ping ran %d times, want once", n)
	}

	ep2, l2, _ := reopenEP(t, dir)
	expect(t, l2, `{"seq":1,"method":"deliver","params":["notify",[["rp-2",true,{"body":"#{\"#error\":\"`+textLocalRestart+`\",\"name\":\"Error\"}","slots":[]}]]]}`)
	if _, err := ep2.ExportNamed("svc", svc()); err != nil {
		t.Fatal(err)
	}
	feed(t, ep2, `{"seq":4,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"ping\",[]]","slots":[]},"result":"rp+3"}]}`)
	expect(t, l2, `{"seq":2,"method":"deliver","params":["notify",[["rp-3",false,{"body":"#\"pong\"","slots":[]}]]]}`)
	quiet(t, l2)
}

// The validator is the last word: a result the endpoint's own checks let
// through but that names a reference the peer does not have (here hidden
// in an error's extra properties) is not sent; a rejection saying why is
// sent instead.
func TestValidatorGuardsResults(t *testing.T) {
	ep, l := transcriptEP(t, t.TempDir())
	url, err := ep.Export(Methods{"sneaky": func(context.Context, []any) (any, error) {
		return nil, &smallcaps.Error{Name: "Error", Message: "x", Extra: smallcaps.Record{{Key: "cause", Value: smallcaps.Remotable{Slot: "ro-99"}}}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, ep, `{"seq":1,"method":"redeemURL","params":["`+url+`","1"]}`)
	expect(t, l, `{"seq":1,"method":"redeemURLReply","params":[true,"1","ro+1"]}`)
	feed(t, ep, `{"seq":2,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"sneaky\",[]]","slots":[]},"result":"rp+1"}]}`)
	select {
	case o := <-l.outgoing():
		if !strings.Contains(string(o.Params), `["rp-1",true,`) || !strings.Contains(string(o.Params), "ro-99 is not an export reference") || strings.Contains(string(o.Params), `"slots":["ro-99"]`) {
			t.Fatalf("Go sent %s", o.Params)
		}
	case <-ctxT(t).Done():
		t.Fatal("nothing sent")
	}
}
