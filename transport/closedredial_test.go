package transport

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocapnet/ocapnet/wire"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// After we close the link to a JavaScript peer (a featureless go-libp2p
// host here), it cannot be told and redials: each redial is reset at once,
// before its handshake is answered or counted as a failure, counted in
// closedRedials, and logged once.
func TestClosedLegacyRedialsRefusedCheaply(t *testing.T) {
	logs := &syncBuffer{}
	a := startNode(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.HandshakeTimeout = 5 * time.Second
	})
	x := rawHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := x.Connect(ctx, peer.AddrInfo{ID: a.PeerID(), Addrs: a.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	// dial is the JavaScript peer's dial: a stream, its handshake (no
	// features), then it waits for the handshakeAck.
	dial := func() (network.Stream, error) {
		s, err := x.NewStream(ctx, a.PeerID(), wire.ProtocolID)
		if err != nil {
			return nil, err
		}
		if err := wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{IncarnationID: "js-1"})); err != nil {
			s.Reset()
			return nil, err
		}
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := wire.NewReader(s, 0).ReadFrame(); err != nil {
			s.Reset()
			return nil, err
		}
		return s, nil
	}
	s, err := dial()
	if err != nil {
		t.Fatalf("first dial: %v", err)
	}
	defer s.Reset()
	waitFor(t, 5*time.Second, "channel", func() bool { return a.state(x.ID()) == StateConnected })
	if err := a.Close(x.ID()); err != nil {
		t.Fatal(err)
	}
	failuresBefore := testutil.ToFloat64(a.metrics.handshakeFailures)
	const redials = 5
	for i := range redials {
		start := time.Now()
		rs, err := dial()
		if err == nil {
			rs.Reset()
			t.Fatalf("redial %d after our Close got a handshakeAck", i)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("redial %d refused after %v: not at once", i, d)
		}
	}
	// A redial whose handshake has not arrived is refused as fast: the
	// stream is reset before its handshake is read (not after
	// HandshakeTimeout).
	silent, err := x.NewStream(ctx, a.PeerID(), wire.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := streamEnds(silent, 4*time.Second); err != nil {
		t.Fatalf("a redial without a handshake yet: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a redial without a handshake yet was refused after %v: its handshake was waited for", d)
	}
	waitFor(t, 5*time.Second, "redials counted", func() bool {
		return testutil.ToFloat64(a.metrics.closedRedials) == redials+1
	})
	if got := testutil.ToFloat64(a.metrics.handshakeFailures) - failuresBefore; got != 0 {
		t.Errorf("%v refused redials counted as handshake failures: their handshakes were read", got)
	}
	if n := logs.count("refusing the redials of a JavaScript peer"); n != 1 {
		t.Errorf("%d log lines for %d refused redials, want 1", n, redials+1)
	}
	if a.state(x.ID()) != StateClosed {
		t.Errorf("state %v after the redials, want closed", a.state(x.ID()))
	}
}
