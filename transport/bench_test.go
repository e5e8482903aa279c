package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/wire"
)

// BenchmarkSend measures messages per second through two transports on
// loopback TCP: Send on one side, OnMessage on the other, counted when the
// last message arrives. Compare with BenchmarkBareStream in the same run:
//
//	go test -run '^$' -bench 'Send|BareStream' -benchtime 50000x ./transport/
func BenchmarkSend(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var received atomic.Int64
			var counting atomic.Bool
			var once sync.Once
			done := make(chan struct{})
			target := int64(b.N)
			recvOpts := fastOptions(newSeed())
			recvOpts.Logger = nil
			recv, err := Start(context.Background(), recvOpts, Handler{OnMessage: func(peer.ID, []byte) {
				if received.Add(1) == target && counting.Load() {
					once.Do(func() { close(done) })
				}
			}})
			if err != nil {
				b.Fatal(err)
			}
			defer recv.Stop(context.Background())
			sendOpts := fastOptions(newSeed())
			sendOpts.Logger = nil
			send, err := Start(context.Background(), sendOpts, Handler{})
			if err != nil {
				b.Fatal(err)
			}
			defer send.Stop(context.Background())
			hint := recv.ListenAddrs()[0]
			msg := bytes.Repeat([]byte("x"), size)
			// Warm up: connect before timing.
			if err := send.Send(context.Background(), recv.PeerID(), msg, hint); err != nil {
				b.Fatal(err)
			}
			for received.Load() != 1 {
				time.Sleep(time.Millisecond) // benchmark setup, not a test wait
			}
			received.Store(0)
			counting.Store(true)
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := send.Send(context.Background(), recv.PeerID(), msg); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				b.Fatalf("only %d of %d messages arrived", received.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkBareStream is the stack's own limit: a bare go-libp2p stream
// (same security, muxer and loopback TCP) writing the same length-prefixed
// frames, one Write per frame, read with wire.Reader.
func BenchmarkBareStream(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			hr, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
			if err != nil {
				b.Fatal(err)
			}
			defer hr.Close()
			hs, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
			if err != nil {
				b.Fatal(err)
			}
			defer hs.Close()
			done := make(chan struct{})
			target := b.N
			hr.SetStreamHandler(wire.ProtocolID, func(s network.Stream) {
				r := wire.NewReader(s, 0)
				for n := 0; ; n++ {
					if n == target {
						close(done)
					}
					if _, err := r.ReadFrame(); err != nil {
						if err != io.EOF {
							s.Reset()
						}
						return
					}
				}
			})
			if err := hs.Connect(context.Background(), peer.AddrInfo{ID: hr.ID(), Addrs: hr.Addrs()}); err != nil {
				b.Fatal(err)
			}
			s, err := hs.NewStream(context.Background(), hr.ID(), wire.ProtocolID)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			msg := bytes.Repeat([]byte("x"), size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := wire.WriteFrame(s, msg); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				b.Fatal("frames did not all arrive")
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
