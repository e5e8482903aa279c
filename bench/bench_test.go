package bench

import (
	"context"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/relay"
)

// BenchmarkPairs runs the transport pairs of `ocapnet bench` under the Go
// benchmark harness, for profiling:
//
//	go test -run '^$' -bench Pairs -cpuprofile cpu.out ./internal/bench/
func BenchmarkPairs(b *testing.B) {
	ctx := context.Background()
	rl, err := relay.Start(relay.Options{KeySeed: seed(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		b.Fatal(err)
	}
	defer rl.Stop()
	for _, path := range []string{"tcp", "quic"} {
		b.Run("ours-"+path, func(b *testing.B) {
			p, err := oursPair(ctx, path, rl)
			if err != nil {
				b.Fatal(err)
			}
			defer p.close()
			v, err := p.throughput(100, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(v, "msgs/s")
		})
		b.Run("bare-"+path, func(b *testing.B) {
			p, err := barePair(ctx, path, rl)
			if err != nil {
				b.Fatal(err)
			}
			defer p.close()
			v, err := p.throughput(100, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(v, "msgs/s")
		})
	}
}
