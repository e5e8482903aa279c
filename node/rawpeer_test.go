package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// rawPeer is a bare transport that writes hand-made frames, as a JavaScript
// kernel (or a misbehaving peer) would, and records the frames it receives.
type rawPeer struct {
	*transport.Transport
	mu     sync.Mutex
	frames []string
	inc    string
}

func startRaw(t *testing.T, seed identity.Seed) *rawPeer {
	t.Helper()
	r := &rawPeer{inc: identity.NewIncarnationID()}
	opts := transport.Options{KeySeed: seed, IncarnationID: r.inc, Config: fastOptions("").Transport}
	opts.Logger = testLogger()
	tr, err := transport.Start(context.Background(), opts, transport.Handler{
		OnMessage: func(_ peer.ID, msg []byte) {
			r.mu.Lock()
			r.frames = append(r.frames, string(msg))
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Transport = tr
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tr.Stop(ctx)
	})
	return r
}

func (r *rawPeer) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.frames)
}

func (r *rawPeer) send(t *testing.T, to *testNode, frame string) {
	t.Helper()
	if err := r.Send(context.Background(), to.PeerID(), []byte(frame), to.addr(t)); err != nil {
		t.Fatal(err)
	}
}

func env(seq int) string { return fmt.Sprintf(`{"seq":%d,"method":"deliver","params":[%d]}`, seq, seq) }

// The exact bytes a JavaScript kernel sees, and its frames understood.
func TestWireWithRawPeer(t *testing.T) {
	n := start(t, fastOptions(t.TempDir()))
	r := startRaw(t, identity.Seed{0x51})
	r.send(t, n, `{"seq":1,"method":"deliver","params":["message","ko1",{"methargs":{"body":"#[]","slots":[]}}]}`)
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(n.rec.messages()) == 1 })
	if m := n.rec.messages()[0]; m.Seq != 1 || m.Method != "deliver" || string(m.Params) != `["message","ko1",{"methargs":{"body":"#[]","slots":[]}}]` {
		t.Fatalf("delivered %+v", m)
	}
	waitFor(t, 5*time.Second, "standalone ack", func() bool { return slices.Contains(r.got(), `{"ack":1}`) })

	if _, err := n.Send(context.Background(), r.PeerID(), "deliver", []byte(`["notify",[]]`)); err != nil {
		t.Fatal(err)
	}
	// Our first message to it piggybacks our ack of its message 1.
	waitFor(t, 5*time.Second, "our message", func() bool {
		return slices.Contains(r.got(), `{"seq":1,"ack":1,"method":"deliver","params":["notify",[]]}`)
	})
	r.send(t, n, `{"ack":1}`)
	waitFor(t, 5*time.Second, "acknowledged event", func() bool { return len(eventsOf[Acknowledged](n.rec)) == 1 })
}

// Duplicates are dropped and acknowledged again, so a sender whose ack was
// lost stops resending.
func TestDuplicateDroppedAndReacknowledged(t *testing.T) {
	n := start(t, fastOptions(t.TempDir()))
	r := startRaw(t, identity.Seed{0x52})
	for _, s := range []int{1, 2} {
		r.send(t, n, env(s))
	}
	waitFor(t, 5*time.Second, "ack 2", func() bool { return slices.Contains(r.got(), `{"ack":2}`) })
	before := len(r.got())
	r.send(t, n, env(2))
	r.send(t, n, env(1))
	waitFor(t, 5*time.Second, "re-ack", func() bool {
		g := r.got()
		return len(g) > before && g[len(g)-1] == `{"ack":2}`
	})
	if got := len(n.rec.messages()); got != 2 {
		t.Fatalf("%d deliveries, want 2", got)
	}
}

// A gap is not acknowledged and nothing after it is delivered until the
// missing message comes, or until the next message arrived GapTolerance
// times (a sender that gave up on the missing ones).
func TestGapHeldThenFilledOrAccepted(t *testing.T) {
	t.Run("filled", func(t *testing.T) {
		n := start(t, fastOptions(t.TempDir()))
		r := startRaw(t, identity.Seed{0x53})
		r.send(t, n, env(1))
		r.send(t, n, env(3))
		r.send(t, n, env(3))
		waitFor(t, 5*time.Second, "ack 1", func() bool { return slices.Contains(r.got(), `{"ack":1}`) })
		if len(n.rec.messages()) != 1 {
			t.Fatalf("delivered past a gap: %+v", n.rec.messages())
		}
		r.send(t, n, env(2))
		r.send(t, n, env(3))
		waitFor(t, 5*time.Second, "3 deliveries", func() bool { return len(n.rec.messages()) == 3 })
		for i, m := range n.rec.messages() {
			if m.Seq != uint64(i+1) {
				t.Fatalf("order: %+v", n.rec.messages())
			}
		}
		if g := eventsOf[Gap](n.rec); len(g) != 0 {
			t.Fatalf("gap reported: %+v", g)
		}
	})
	t.Run("accepted", func(t *testing.T) {
		n := start(t, fastOptions(t.TempDir()))
		r := startRaw(t, identity.Seed{0x54})
		r.send(t, n, env(1))
		r.send(t, n, env(4))
		r.send(t, n, env(4))
		waitFor(t, 5*time.Second, "ack 1", func() bool { return slices.Contains(r.got(), `{"ack":1}`) })
		if len(n.rec.messages()) != 1 || slices.Contains(r.got(), `{"ack":4}`) {
			t.Fatal("gap accepted too early")
		}
		r.send(t, n, env(4)) // third reception: GapTolerance 3
		waitFor(t, 5*time.Second, "ack 4", func() bool { return slices.Contains(r.got(), `{"ack":4}`) })
		msgs := n.rec.messages()
		if len(msgs) != 2 || msgs[1].Seq != 4 {
			t.Fatalf("deliveries: %+v", msgs)
		}
		if g := eventsOf[Gap](n.rec); len(g) != 1 || g[0].From != 2 || g[0].To != 3 {
			t.Fatalf("gap events: %+v", g)
		}
	})
}

// A sender that resends its whole window after a gap (upstream's
// go-back-N after its give-up) gets the gap accepted after GapTolerance
// rounds: the lowest frame after the gap is what counts.
func TestGapAcceptedAfterWindowRounds(t *testing.T) {
	n := start(t, fastOptions(t.TempDir()))
	r := startRaw(t, identity.Seed{0x5c})
	r.send(t, n, env(1))
	for round := 1; round <= 3; round++ {
		for _, s := range []int{5, 6, 7} {
			r.send(t, n, env(s))
		}
		if round < 3 {
			time.Sleep(50 * time.Millisecond) // the sender's pacing between rounds, not a wait for a condition
			if len(n.rec.messages()) != 1 {
				t.Fatalf("round %d: the gap was accepted too early: %+v", round, n.rec.messages())
			}
		}
	}
	waitFor(t, 5*time.Second, "deliveries after the gap", func() bool { return len(n.rec.messages()) == 4 })
	if g := eventsOf[Gap](n.rec); len(g) != 1 || g[0].From != 2 || g[0].To != 4 {
		t.Fatalf("gap events: %+v", g)
	}
	for i, want := range []uint64{1, 5, 6, 7} {
		if m := n.rec.messages()[i]; m.Seq != want {
			t.Fatalf("delivery %d: seq %d, want %d", i, m.Seq, want)
		}
	}
}

// After a crash, messages in (Delivered, Intent] come again marked as
// redeliveries; later ones are not marked.
func TestRedeliveryMarkedAfterCrash(t *testing.T) {
	dir := t.TempDir()
	first := start(t, fastOptions(dir))
	stop(t, first.Node)
	seed := identity.Seed{0x55}
	r := startRaw(t, seed)
	// The state a crash leaves: 2 recorded as delivered, up to 5 possibly.
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *store.Tx) error {
		return tx.PutPeer(seed.PeerID().String(), store.PeerRecord{Incarnation: r.inc, Delivered: 2, Intent: 5})
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	n := start(t, fastOptions(dir))
	for s := 1; s <= 7; s++ {
		r.send(t, n, env(s))
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return len(n.rec.messages()) == 5 })
	for _, m := range n.rec.messages() {
		if want := m.Seq <= 5; m.Redelivery != want {
			t.Fatalf("seq %d redelivery %v, want %v", m.Seq, m.Redelivery, want)
		}
	}
	if len(eventsOf[PeerRestarted](n.rec)) != 0 {
		t.Fatal("same incarnation reported as a restart")
	}
}

// A malformed frame is dropped with a log line, not acknowledged, and the
// link keeps working.
func TestMalformedFrameDropped(t *testing.T) {
	n := start(t, fastOptions(t.TempDir()))
	r := startRaw(t, identity.Seed{0x56})
	r.send(t, n, `{"seq":0,"method":"x"}`)
	r.send(t, n, `not json`)
	r.send(t, n, env(1))
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(n.rec.messages()) == 1 })
	if m := n.rec.messages()[0]; m.Seq != 1 {
		t.Fatalf("delivered %+v", m)
	}
}

// A peer restart decided on one channel while frames of the old incarnation
// still arrive on another: inbound processing and the reset never
// interleave (recvMu), so the restarted peer's seq 1 is delivered, not taken
// for a duplicate of the old incarnation's messages. Run under -race.
func TestRestartWhileOldChannelDelivers(t *testing.T) {
	for round := range 5 {
		n := start(t, fastOptions(t.TempDir()))
		seed := identity.Seed{0x57, byte(round)}
		old := startRaw(t, seed)
		old.send(t, n, env(1))
		waitFor(t, 5*time.Second, "first delivery", func() bool { return len(n.rec.messages()) == 1 })
		stopFlood := make(chan struct{})
		flooded := make(chan struct{})
		go func() {
			defer close(flooded)
			for s := 2; s < 2000; s++ {
				select {
				case <-stopFlood:
					return
				default:
				}
				if err := old.TrySend(context.Background(), n.PeerID(), []byte(env(s))); err != nil {
					return
				}
			}
		}()
		restarted := startRaw(t, seed) // same identity, new incarnation
		restarted.send(t, n, `{"seq":1,"method":"deliver","params":["after restart"]}`)
		waitFor(t, 10*time.Second, "the restarted peer's first message", func() bool {
			for _, m := range n.rec.messages() {
				if m.Seq == 1 && string(m.Params) == `["after restart"]` {
					return true
				}
			}
			return false
		})
		close(stopFlood)
		<-flooded
		if r := eventsOf[PeerRestarted](n.rec); len(r) != 1 || r[0].Current != restarted.inc {
			t.Fatalf("round %d: restarts %+v", round, r)
		}
	}
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A flood of malformed frames is summarised in the log, not one line per
// frame, and the link keeps working.
func TestMalformedFloodSummarised(t *testing.T) {
	var logs lockedBuffer
	opts := fastOptions(t.TempDir())
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	n := start(t, opts)
	r := startRaw(t, identity.Seed{0x58})
	r.send(t, n, `not json`)
	for range 5000 {
		if err := r.TrySend(context.Background(), n.PeerID(), []byte(`{"seq":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	r.send(t, n, env(1))
	waitFor(t, 10*time.Second, "the good message", func() bool { return len(n.rec.messages()) == 1 })
	if lines := strings.Count(logs.String(), "malformed frame dropped"); lines > 2 {
		t.Fatalf("%d log lines for 5,001 malformed frames, want a summary", lines)
	}
}

// The size rule: a message whose frame, with its sequence number and no
// acknowledgement, is exactly the limit is sent, whatever ack there is to
// carry (the ack is then left out of that frame); one byte more is refused.
func TestFrameSizeBoundary(t *testing.T) {
	n := start(t, fastOptions(t.TempDir()))
	r := startRaw(t, identity.Seed{0x59})
	// The raw peer sends first, so n has an ack to piggyback.
	r.send(t, n, env(1))
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(n.rec.messages()) == 1 })
	limit := n.Transport().MaxMessageSize()
	if limit != 1<<20 {
		t.Fatalf("default frame limit %d, want 1,048,576 as JavaScript kernels", limit)
	}
	params := func(size int) json.RawMessage {
		// A JSON string of the given total length.
		return json.RawMessage(`"` + strings.Repeat("x", size-2) + `"`)
	}
	fixed := wire.EnvelopeSize(wire.Envelope{Seq: 1, Method: "m", Params: json.RawMessage(`""`)}) - 2
	exact := params(limit - fixed)
	if got := wire.EnvelopeSize(wire.Envelope{Seq: 1, Method: "m", Params: exact}); got != limit {
		t.Fatalf("test setup: frame of %d bytes, want %d", got, limit)
	}
	if _, err := n.Send(context.Background(), r.PeerID(), "m", params(limit-fixed+1)); !errors.Is(err, transport.ErrMessageTooLarge) {
		t.Fatalf("a frame one byte over the limit: %v, want ErrMessageTooLarge", err)
	}
	if _, err := n.Send(context.Background(), r.PeerID(), "m", exact); err != nil {
		t.Fatalf("a frame of exactly the limit: %v", err)
	}
	var big string
	waitFor(t, 10*time.Second, "the 1 MiB frame at the raw peer", func() bool {
		for _, f := range r.got() {
			if len(f) == limit {
				big = f
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(big, `{"seq":1,"method":"m","params":"xxx`) {
		t.Fatalf("the frame at the limit starts %q: the ack should have been left out", big[:40])
	}
	// The acknowledgement goes on its own.
	waitFor(t, 5*time.Second, "a standalone ack", func() bool { return slices.Contains(r.got(), `{"ack":1}`) })

	// The other way: a JavaScript kernel sends frames of exactly 1 MiB,
	// ack included; n delivers it.
	head := `{"seq":2,"method":"m","params":"`
	tail := `","ack":1}`
	in := head + strings.Repeat("y", limit-len(head)-len(tail)) + tail
	r.send(t, n, in)
	waitFor(t, 10*time.Second, "delivery of a 1 MiB frame", func() bool { return len(n.rec.messages()) == 2 })
	if got := n.rec.messages()[1]; len(got.Params) != limit-len(head)-len(tail)+2 {
		t.Fatalf("delivered params of %d bytes", len(got.Params))
	}
}

// A peer that reads and never acknowledges (a JavaScript kernel after its
// silent closeConnection) is reported Stalled while the link is up, again at
// every further timeout, and StallEnded when it acknowledges; with
// StallGiveUp the messages are parked.
func TestStalledPeerReported(t *testing.T) {
	n := start(t, fastOptions(t.TempDir()))
	r := startRaw(t, identity.Seed{0x5a})
	r.send(t, n, env(1)) // gives n a channel and the raw peer's address
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(n.rec.messages()) == 1 })
	sent := time.Now()
	for i := range 3 {
		if _, err := n.Send(context.Background(), r.PeerID(), "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "a Stalled event", func() bool { return len(eventsOf[Stalled](n.rec)) > 0 })
	s := eventsOf[Stalled](n.rec)[0]
	if s.Peer != r.PeerID() || s.Unacked != 3 || s.Rounds != 3 || s.Since.Before(sent.Add(-time.Second)) {
		t.Fatalf("Stalled %+v", s)
	}
	if ps := peerStatus(n.Node, r.PeerID()); ps.StalledSince.IsZero() {
		t.Error("PeerStatus does not show the stall")
	}
	waitFor(t, 10*time.Second, "a repeated Stalled event", func() bool { return len(eventsOf[Stalled](n.rec)) > 1 })
	r.send(t, n, `{"ack":3}`)
	waitFor(t, 5*time.Second, "StallEnded", func() bool { return len(eventsOf[StallEnded](n.rec)) == 1 })
	if len(eventsOf[GaveUp](n.rec)) != 0 {
		t.Fatal("gave up although StallGiveUp is off")
	}

	opts := fastOptions(t.TempDir())
	opts.StallGiveUp = time.Second
	g := start(t, opts)
	r2 := startRaw(t, identity.Seed{0x5b})
	r2.send(t, g, env(1))
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(g.rec.messages()) == 1 })
	if _, err := g.Send(context.Background(), r2.PeerID(), "m", param(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "a give-up", func() bool { return len(eventsOf[GaveUp](g.rec)) == 1 })
	if gu := eventsOf[GaveUp](g.rec)[0]; !errors.Is(gu.Reason, ErrStalled) || len(gu.Messages) != 1 {
		t.Fatalf("give-up %+v", gu)
	}
}
