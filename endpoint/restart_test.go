package endpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/kernelwire"
)

// blocker is an object whose "block" method waits until released or the
// endpoint stops; entered reports each call.
func blocker(entered chan<- string, release <-chan struct{}) Methods {
	return Methods{
		"block": func(ctx context.Context, args []any) (any, error) {
			entered <- "block"
			select {
			case <-release:
				return "released", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		"ping": func(context.Context, []any) (any, error) { return "pong", nil },
	}
}

// The exporter restarts on the same data directory (same incarnation):
// the URL still redeems, the caller's existing reference still works, a
// call that was running when it stopped is rejected once by the new
// process, and an anonymous object passed before the restart is gone.
func TestTablesSurviveExporterRestart(t *testing.T) {
	dir := t.TempDir()
	exp := startEP(t, dir, "", Options{})
	listen := exp.listen(t)
	exp.opts.Hints = []string{exp.addr(t)}
	caller := startEP(t, t.TempDir(), "", Options{})
	ctx := ctxT(t)
	entered := make(chan string, 4)
	url, err := exp.ExportNamed("svc", blocker(entered, nil))
	if err != nil {
		t.Fatal(err)
	}
	var anon *Ref
	url2, err := exp.ExportNamed("factory", Methods{"make": func(context.Context, []any) (any, error) {
		return Methods{"hi": func(context.Context, []any) (any, error) { return "hi", nil }}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := caller.Redeem(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	factory, err := caller.Redeem(ctx, url2)
	if err != nil {
		t.Fatal(err)
	}
	v, err := factory.Call(ctx, "make")
	if anon, _ = v.(*Ref); err != nil || anon == nil {
		t.Fatalf("make: %v %v", v, err)
	}
	if v, err := anon.Call(ctx, "hi"); err != nil || v != "hi" {
		t.Fatalf("anon hi: %v %v", v, err)
	}
	pending, err := ref.Send(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	inc := exp.Node().IncarnationID()
	exp.stop(t)

	exp2 := startEP(t, dir, listen, Options{Hints: []string{exp.addr0(t, listen)}})
	if exp2.Node().IncarnationID() != inc {
		t.Fatalf("incarnation changed across a restart on the same directory")
	}
	// The call the first process never finished is rejected by the second.
	_, err = pending.Wait(ctx)
	var rej *Rejection
	if !errors.As(err, &rej) || !strings.Contains(rej.ErrorValue().Message, "restarted before settling") {
		t.Fatalf("pending call after the exporter's restart: %v", err)
	}
	url3, err := exp2.ExportNamed("svc", blocker(entered, nil))
	if err != nil || url3 != url {
		t.Fatalf("ExportNamed after restart: %s %v, want %s", url3, err, url)
	}
	if v, err := ref.Call(ctx, "ping"); err != nil || v != "pong" {
		t.Fatalf("existing reference after restart: %v %v", v, err)
	}
	ref2, err := caller.Redeem(ctx, url)
	if err != nil {
		t.Fatalf("redeem after restart: %v", err)
	}
	if ref2.n != ref.n {
		t.Errorf("redeeming again gave ro+%d, the first time ro+%d: the export entry was not reused", ref2.n, ref.n)
	}
	if _, err := anon.Call(ctx, "hi"); !errors.As(err, &rej) || !strings.Contains(rej.ErrorValue().Message, "OBJECT_DELETED") {
		t.Fatalf("anonymous object after restart: %v", err)
	}
}

func (e *testEP) addr0(t *testing.T, listen string) string {
	return listen + "/p2p/" + e.PeerID().String()
}

// The exporter comes back with a new incarnation (its data directory lost,
// same key): the caller's outstanding call and its reference are rejected
// with ErrPeerRestarted and ErrStaleRef (kp §8.2, K3: a Go caller never
// hangs), and a fresh URL works.
func TestPeerRestartRejectsOutstanding(t *testing.T) {
	seed := strings.Repeat("ab", 32)
	dir := t.TempDir()
	exp := startSeeded(t, dir, "", seed)
	listen := exp.listen(t)
	exp.opts.Hints = []string{exp.addr(t)}
	caller := startEP(t, t.TempDir(), "", Options{})
	ctx := ctxT(t)
	entered := make(chan string, 4)
	url, err := exp.ExportNamed("svc", blocker(entered, nil))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := caller.Redeem(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := ref.Send(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	exp.stop(t)

	exp2 := startSeeded(t, t.TempDir(), listen, seed)
	exp2.opts.Hints = []string{exp.addr0(t, listen)}
	url2, err := exp2.ExportNamed("svc", blocker(entered, nil))
	if err != nil {
		t.Fatal(err)
	}
	// The caller learns of the new incarnation at its next handshake,
	// which a redemption makes; that first redemption, sent before the
	// handshake, is itself handed back by the node and rejected. The
	// second works.
	ref2, err := caller.Redeem(ctx, url2)
	if errors.Is(err, ErrPeerRestarted) {
		ref2, err = caller.Redeem(ctx, url2)
	}
	if err != nil {
		t.Fatalf("redeem the new URL: %v", err)
	}
	_, err = pending.Wait(ctx)
	var rej *Rejection
	if !errors.Is(err, ErrPeerRestarted) || !errors.As(err, &rej) || !strings.Contains(rej.ErrorValue().Message, "PEER_RESTARTED") {
		t.Fatalf("outstanding call after the peer's restart: %v", err)
	}
	if _, err := ref.Send(ctx, "ping"); !errors.Is(err, ErrStaleRef) {
		t.Fatalf("old reference after the peer's restart: %v", err)
	}
	if v, err := ref2.Call(ctx, "ping"); err != nil || v != "pong" {
		t.Fatalf("new reference: %v %v", v, err)
	}
	// The old URL names nothing in the new incarnation.
	if _, err := caller.Redeem(ctx, url); !errors.Is(err, ErrRedeemFailed) {
		t.Fatalf("old URL: %v", err)
	}
}

func startSeeded(t *testing.T, dir, listen, seed string) *testEP {
	t.Helper()
	no := nodeOptions(dir, listen)
	no.KeySeed = seed
	ep, err := Start(context.Background(), no, Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	te := &testEP{Endpoint: ep, dir: dir}
	t.Cleanup(func() { te.stop(t) })
	return te
}

// Closing the link rejects the outstanding calls to that peer with
// ErrGaveUp, even when the message itself was acknowledged.
func TestGiveUpRejectsOutstanding(t *testing.T) {
	exp, caller := pair(t)
	ctx := ctxT(t)
	entered := make(chan string, 4)
	release := make(chan struct{})
	defer close(release)
	url, err := exp.Export(blocker(entered, release))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := caller.Redeem(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := ref.Send(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := caller.Node().Close(exp.PeerID()); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = pending.Wait(wctx)
	var rej *Rejection
	if !errors.Is(err, ErrGaveUp) || !errors.As(err, &rej) || !strings.Contains(rej.ErrorValue().Message, "CONNECTION_LOST") {
		t.Fatalf("outstanding call after Close: %v", err)
	}
}

var _ = kernelwire.Object
