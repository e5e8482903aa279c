package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocapnet/ocapnet/wire"
)

// countingWriter counts the writes that reach a channel's stream and the
// bytes they carry.
type countingWriter struct {
	w io.Writer

	mu     sync.Mutex
	writes int
	bytes  int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.bytes += len(b)
	c.mu.Unlock()
	return c.w.Write(b)
}

func (c *countingWriter) counts() (writes, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.bytes
}

// countWrites wraps the writer of a's channel to id (which must be open) in
// a countingWriter.
func countWrites(t *testing.T, a *node, id peer.ID) *countingWriter {
	t.Helper()
	a.mu.Lock()
	p := a.peers[id]
	a.mu.Unlock()
	if p == nil {
		t.Fatal("no peer state")
	}
	p.sendSem <- struct{}{} // the writer is guarded by the send semaphore
	defer func() { <-p.sendSem }()
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.ch == nil {
		t.Fatal("no channel")
	}
	c := &countingWriter{w: p.ch.w}
	p.ch.w = c
	return c
}

// A run of frames handed over at once goes out in far fewer writes than
// frames (here one: 200 small frames fit one write), in order.
func TestRunOfFramesCoalesced(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	sendAll(t, a, b.PeerID(), []string{"hello"}, b.addr(t))
	waitMessages(t, b, a.PeerID(), []string{"hello"})
	c := countWrites(t, a, b.PeerID())
	msgs := numbered("run", 200)
	frames := make([][]byte, len(msgs))
	size := 0
	for i, m := range msgs {
		frames[i] = []byte(m)
		size += len(wire.AppendFrame(nil, frames[i]))
	}
	if _, err := a.TrySendFramesOn(context.Background(), b.PeerID(), frames, 0); err != nil {
		t.Fatal(err)
	}
	writes, bytes := c.counts()
	if writes != 1 || bytes != size {
		t.Errorf("a run of %d frames (%d bytes) took %d writes of %d bytes, want 1", len(frames), size, writes, bytes)
	}
	waitMessages(t, b, a.PeerID(), append([]string{"hello"}, msgs...))
}

// A lone frame is written before Send returns: nothing waits for more
// frames to come (idle latency does not grow).
func TestLoneFrameWrittenAtOnce(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	sendAll(t, a, b.PeerID(), []string{"hello"}, b.addr(t))
	waitMessages(t, b, a.PeerID(), []string{"hello"})
	c := countWrites(t, a, b.PeerID())
	for i := 1; i <= 3; i++ {
		msg := []byte(fmt.Sprintf(`{"lone":%d}`, i))
		if err := a.Send(context.Background(), b.PeerID(), msg); err != nil {
			t.Fatal(err)
		}
		// Counted when Send returns: the frame reached the stream at once.
		if writes, bytes := c.counts(); writes != i || bytes != i*len(wire.AppendFrame(nil, msg)) {
			t.Fatalf("after %d lone Sends: %d writes of %d bytes reached the stream", i, writes, bytes)
		}
	}
	waitMessages(t, b, a.PeerID(), []string{"hello", `{"lone":1}`, `{"lone":2}`, `{"lone":3}`})
}

// A peer that handshakes and then never reads holds our writes back
// (backpressure: a Send blocks while the stream's window is full), and the
// blocked write fails after WriteTimeout instead of hanging; the channel is
// then gone.
func TestBackpressureThenWriteTimeout(t *testing.T) {
	a := startNode(t, func(o *Options) { o.WriteTimeout = 500 * time.Millisecond })
	x := rawHost(t)
	accepted := make(chan network.Stream, 1)
	x.SetStreamHandler(wire.ProtocolID, func(s network.Stream) {
		r := wire.NewReader(s, 0)
		if _, err := r.ReadFrame(); err != nil {
			s.Reset()
			return
		}
		_ = wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{Ack: true, IncarnationID: "silent-reader", Features: []string{wire.FeatureClose}}))
		accepted <- s // never read again
	})
	hint := x.Addrs()[0].String() + "/p2p/" + x.ID().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Send(ctx, x.ID(), []byte("first"), hint); err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	defer s.Reset()
	big := []byte(strings.Repeat("x", 60<<10))
	run := [][]byte{big, big, big, big}
	start := time.Now()
	var err error
	var written int
	for written = 0; written < 1000 && err == nil; written++ { // 240 MiB at most: far past any window
		_, err = a.TrySendFramesOn(ctx, x.ID(), run, 0)
	}
	if err == nil {
		t.Fatalf("%d runs of 240 KiB written to a peer that reads nothing: no backpressure", written)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "deadline") && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("blocked write ended with %v, want the write timeout", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("failed after %v: before the write timeout", d)
	}
	if written > 100 {
		t.Errorf("%d runs (%d MiB) written before blocking: the peer's window did not hold us back", written, written*240>>10)
	}
	waitFor(t, 5*time.Second, "channel forgotten", func() bool { return a.state(x.ID()) != StateConnected })
}

// A liveness probe over a yamux connection is a yamux ping: it opens no
// stream (no libp2p ping reaches the peer), and the link stays up.
func TestLivenessProbeOpensNoStream(t *testing.T) {
	a := startNode(t, func(o *Options) {
		o.LivenessInterval = 50 * time.Millisecond
		o.LivenessTimeout = 2 * time.Second
	})
	b := startNode(t, nil)
	var pings sync.Mutex
	libp2pPings := 0
	b.Host().SetStreamHandler(ping.ID, func(s network.Stream) {
		pings.Lock()
		libp2pPings++
		pings.Unlock()
		s.Reset()
	})
	sendAll(t, a, b.PeerID(), []string{"hello"}, b.addr(t))
	waitMessages(t, b, a.PeerID(), []string{"hello"})
	waitFor(t, 10*time.Second, "five probes", func() bool { return testutil.ToFloat64(a.metrics.probes) >= 5 })
	pings.Lock()
	n := libp2pPings
	pings.Unlock()
	if n != 0 {
		t.Errorf("%d libp2p pings reached the peer: probes opened streams", n)
	}
	if got := testutil.ToFloat64(a.metrics.probesFailed); got != 0 {
		t.Errorf("%v probes failed against a live peer", got)
	}
	if a.state(b.PeerID()) != StateConnected {
		t.Errorf("A sees B %v after the probes", a.state(b.PeerID()))
	}
}
