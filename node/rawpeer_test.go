package node

import (
	"context"
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
