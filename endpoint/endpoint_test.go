package endpoint

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/ocapnet/ocapnet/smallcaps"
)

func greeter() Methods {
	return Methods{
		"greet": func(_ context.Context, args []any) (any, error) {
			return fmt.Sprintf("Hello, %v!", args[0]), nil
		},
		"echo": func(_ context.Context, args []any) (any, error) { return args[0], nil },
		"add": func(_ context.Context, args []any) (any, error) {
			a, b := args[0].(*big.Int), args[1].(*big.Int)
			return new(big.Int).Add(a, b), nil
		},
		"boom": func(context.Context, []any) (any, error) {
			return nil, &smallcaps.Error{Name: "TypeError", Message: "go says no"}
		},
		"fail":  func(context.Context, []any) (any, error) { return nil, errors.New("plain failure") },
		"panic": func(context.Context, []any) (any, error) { panic("kaboom") },
		"callBack": func(ctx context.Context, args []any) (any, error) {
			ref, ok := args[0].(*Ref)
			if !ok {
				return nil, fmt.Errorf("argument is a %T, not a reference", args[0])
			}
			return ref.Call(ctx, "name")
		},
	}
}

// Export, redeem and call across two real nodes: records, bigints,
// special strings, an object argument called back, rejections, a panic.
func TestCallAcrossNodes(t *testing.T) {
	exp, caller := pair(t)
	ctx := ctxT(t)
	url, err := exp.ExportNamed("greeter", Named("Greeter", greeter()))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := caller.Redeem(ctx, url)
	if err != nil {
		t.Fatalf("Redeem: %v", err)
	}
	if v, err := ref.Call(ctx, "greet", "Gopher"); err != nil || v != "Hello, Gopher!" {
		t.Fatalf("greet: %v %v", v, err)
	}
	big70 := new(big.Int).Lsh(big.NewInt(1), 70)
	if v, err := ref.Call(ctx, "add", big70, big.NewInt(-7)); err != nil || v.(*big.Int).Cmp(new(big.Int).Sub(big70, big.NewInt(7))) != 0 {
		t.Fatalf("add: %v %v", v, err)
	}
	rec := map[string]any{"!bang": "#hash", "$x": []any{"&amp", "-dash", "+plus"}, "n": 1.5, "u": smallcaps.Undefined{}}
	v, err := ref.Call(ctx, "echo", rec)
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	want := smallcaps.Record{{Key: "!bang", Value: "#hash"}, {Key: "$x", Value: []any{"&amp", "-dash", "+plus"}}, {Key: "n", Value: 1.5}, {Key: "u", Value: smallcaps.Undefined{}}}
	if !smallcaps.Equal(v, want) {
		t.Fatalf("echo record: %#v", v)
	}
	// An object of the caller's, passed as an argument and called back.
	mine := Named("Mine", Methods{"name": func(ctx context.Context, _ []any) (any, error) {
		return "mine, called by " + Caller(ctx).String()[:8], nil
	}})
	if v, err := ref.Call(ctx, "callBack", mine); err != nil || v != "mine, called by "+exp.PeerID().String()[:8] {
		t.Fatalf("callBack: %v %v", v, err)
	}
	// The same object echoed comes back as itself.
	if v, err := ref.Call(ctx, "echo", mine); err != nil || v != mine {
		t.Fatalf("echo object: %#v %v", v, err)
	}
	var rej *Rejection
	if _, err := ref.Call(ctx, "boom"); !errors.As(err, &rej) || rej.ErrorValue() == nil || rej.ErrorValue().Name != "TypeError" || rej.ErrorValue().Message != "go says no" {
		t.Fatalf("boom: %v", err)
	}
	if _, err := ref.Call(ctx, "fail"); !errors.As(err, &rej) || rej.ErrorValue().Message != "plain failure" {
		t.Fatalf("fail: %v", err)
	}
	if _, err := ref.Call(ctx, "panic"); !errors.As(err, &rej) || rej.ErrorValue().Message != `panic in Go method "panic": kaboom` {
		t.Fatalf("panic: %v", err)
	}
	if _, err := ref.Call(ctx, "nope"); !errors.As(err, &rej) || rej.ErrorValue().Name != "TypeError" {
		t.Fatalf("unknown method: %v", err)
	}
	// The exporter still answers after the panic.
	if v, err := ref.Call(ctx, "greet", "again"); err != nil || v != "Hello, again!" {
		t.Fatalf("after panic: %v %v", v, err)
	}
}

// A bad oid is refused with the JavaScript issuer's text.
func TestRedeemBadURL(t *testing.T) {
	exp, caller := pair(t)
	ctx := ctxT(t)
	url, err := exp.Export(greeter())
	if err != nil {
		t.Fatal(err)
	}
	bad := "ocap:zBad@" + url[len("ocap:")+len(url[5:5+indexAt(url[5:])])+1:]
	_, err = caller.Redeem(ctx, bad)
	var re *RedeemError
	if !errors.As(err, &re) || re.Text != "ocapURL has bad object reference" || !errors.Is(err, ErrRedeemFailed) {
		t.Fatalf("Redeem(%s): %v", bad, err)
	}
}

func indexAt(s string) int {
	for i := range s {
		if s[i] == '@' {
			return i
		}
	}
	return -1
}

// Redeeming one's own URL gives a local reference: no frame is sent (kp
// §7.3) and calls go to the object's mailbox.
func TestRedeemOwnURL(t *testing.T) {
	ep, l := transcriptEP(t, t.TempDir())
	ctx := ctxT(t)
	url, err := ep.ExportNamed("g", greeter())
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ep.Redeem(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ref.Call(ctx, "greet", "me"); err != nil || v != "Hello, me!" {
		t.Fatalf("local call: %v %v", v, err)
	}
	var rej *Rejection
	if _, err := ref.Call(ctx, "boom"); !errors.As(err, &rej) {
		t.Fatalf("local rejection: %v", err)
	}
	quiet(t, l)
}

// A message to a JavaScript promise Go received (kp §3.1: target rp-M,
// queued by the kernel until it resolves) carries a fresh result.
func TestSendToPeerPromise(t *testing.T) {
	ep, l := transcriptEP(t, t.TempDir())
	ctx := ctxT(t)
	got := make(chan *Promise, 1)
	url, err := ep.Export(Methods{"take": func(_ context.Context, a []any) (any, error) {
		got <- a[0].(*Promise)
		return nil, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, ep, `{"seq":1,"method":"redeemURL","params":["`+url+`","1"]}`)
	expect(t, l, `{"seq":1,"method":"redeemURLReply","params":[true,"1","ro+1"]}`)
	feed(t, ep, `{"seq":2,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"take\",[\"&0\"]]","slots":["rp+4"]},"result":"rp+5"}]}`)
	expect(t, l, `{"seq":2,"method":"deliver","params":["notify",[["rp-5",false,{"body":"#null","slots":[]}]]]}`)
	p := <-got
	done := make(chan error, 1)
	go func() { _, err := p.Call(ctx, "greet", "later"); done <- err }()
	expect(t, l, `{"seq":3,"method":"deliver","params":["message","rp-4",{"methargs":{"body":"#[\"greet\",[\"later\"]]","slots":[]},"result":"rp+1"}]}`)
	feed(t, ep, `{"seq":3,"method":"deliver","params":["notify",[["rp-1",false,{"body":"#\"hi\"","slots":[]}]]]}`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// K1: the promise itself stays pending.
	if _, _, ok := p.Settled(); ok {
		t.Fatal("a JS promise passed as data settled without a notify")
	}
}
