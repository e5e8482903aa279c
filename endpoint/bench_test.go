package endpoint

import (
	"context"
	"testing"
)

// BenchmarkCallRoundTrip: one call and its result between two nodes on
// loopback, one at a time (each side fsyncs the message, its tables and
// the resolution).
func BenchmarkCallRoundTrip(b *testing.B) {
	exp := startEPB(b)
	caller := startEPB(b)
	exp.opts.Hints = []string{exp.addrB(b)}
	url, err := exp.Export(Methods{"echo": func(_ context.Context, a []any) (any, error) { return a[0], nil }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ref, err := caller.Redeem(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := ref.Call(ctx, "echo", "x"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallsInFlight: 64 calls in flight at once.
func BenchmarkCallsInFlight(b *testing.B) {
	exp := startEPB(b)
	caller := startEPB(b)
	exp.opts.Hints = []string{exp.addrB(b)}
	url, _ := exp.Export(Methods{"echo": func(_ context.Context, a []any) (any, error) { return a[0], nil }})
	ctx := context.Background()
	ref, err := caller.Redeem(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ref.Call(ctx, "echo", "x"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func startEPB(b *testing.B) *testEP {
	ep, err := Start(context.Background(), nodeOptions(b.TempDir(), ""), Options{})
	if err != nil {
		b.Fatal(err)
	}
	te := &testEP{Endpoint: ep}
	b.Cleanup(func() { _ = ep.Stop(context.Background()) })
	return te
}

func (e *testEP) addrB(b *testing.B) string {
	for _, a := range e.Node().ListenAddrs() {
		return a
	}
	b.Fatal("no address")
	return ""
}
