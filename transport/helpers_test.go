package transport

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/identity"
)

func testLogger() *slog.Logger {
	if os.Getenv("TRANSPORT_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Process-wide singletons of go-libp2p's dependencies, started once
		// and never stopped; not goroutines of ours.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

// recorder is a Handler that records everything for assertions.
type recorder struct {
	mu         sync.Mutex
	msgs       map[peer.ID][]string
	events     []Event
	handshakes map[peer.ID]int
	restart    func(peer.ID, string) bool
	changed    chan struct{}
}

func newRecorder() *recorder {
	return &recorder{msgs: map[peer.ID][]string{}, handshakes: map[peer.ID]int{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) handler() Handler {
	return Handler{
		OnMessage: func(from peer.ID, msg []byte) {
			r.mu.Lock()
			r.msgs[from] = append(r.msgs[from], string(msg))
			r.mu.Unlock()
			r.signal()
		},
		OnHandshake: func(p peer.ID, inc string) (bool, error) {
			r.mu.Lock()
			r.handshakes[p]++
			f := r.restart
			r.mu.Unlock()
			if f != nil {
				return f(p, inc), nil
			}
			return false, nil
		},
		OnEvent: func(e Event) {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
			r.signal()
		},
	}
}

func (r *recorder) messages(from peer.ID) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs[from]...)
}

func (r *recorder) eventsOf(match func(Event) bool) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) giveUps(p peer.ID) []GaveUp {
	var out []GaveUp
	for _, e := range r.eventsOf(func(e Event) bool { g, ok := e.(GaveUp); return ok && g.Peer == p }) {
		out = append(out, e.(GaveUp))
	}
	return out
}

func (r *recorder) sawState(p peer.ID, s State) bool {
	return len(r.eventsOf(func(e Event) bool {
		c, ok := e.(StateChanged)
		return ok && c.Peer.ID == p && c.Peer.State == s
	})) > 0
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for the condition
	}
}

// node is a transport under test with its recorder.
type node struct {
	*Transport
	rec  *recorder
	seed identity.Seed
	inc  string
	opts Options
}

// fastOptions are options with short timers for tests.
func fastOptions(seed identity.Seed) Options {
	return Options{
		KeySeed:            seed,
		IncarnationID:      identity.NewIncarnationID(),
		ListenAddrs:        []string{"/ip4/127.0.0.1/tcp/0"},
		ReconnectBaseDelay: 20 * time.Millisecond,
		ReconnectMaxDelay:  200 * time.Millisecond,
		HandshakeTimeout:   2 * time.Second,
		WriteTimeout:       2 * time.Second,
		DialTimeout:        3 * time.Second,
		LivenessInterval:   -1,
		WakeInterval:       -1,
		Logger:             testLogger(),
	}
}

func newSeed() identity.Seed {
	s, err := identity.RandomSeed()
	if err != nil {
		panic(err)
	}
	return s
}

// startNode starts a transport; mod may change the options. Stopped at the
// end of the test.
func startNode(t *testing.T, mod func(*Options)) *node {
	t.Helper()
	opts := fastOptions(newSeed())
	if mod != nil {
		mod(&opts)
	}
	return startWith(t, opts)
}

func startWith(t *testing.T, opts Options) *node {
	t.Helper()
	rec := newRecorder()
	tr, err := Start(context.Background(), opts, rec.handler())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	n := &node{Transport: tr, rec: rec, seed: opts.KeySeed, inc: opts.IncarnationID, opts: opts}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Stop(ctx); err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("Stop: %v", err)
		}
	})
	return n
}

// addr returns n's first TCP listen address (with /p2p/).
func (n *node) addr(t *testing.T) string {
	t.Helper()
	for _, a := range n.ListenAddrs() {
		if strings.Contains(a, "/tcp/") && !strings.Contains(a, "/ws") && !strings.Contains(a, "p2p-circuit") {
			return a
		}
	}
	t.Fatalf("no TCP listen address in %v", n.ListenAddrs())
	return ""
}

func (n *node) state(p peer.ID) State {
	for _, i := range n.Peers() {
		if i.ID == p {
			return i.State
		}
	}
	return StateIdle
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"%s":%d}`, prefix, i)
	}
	return out
}

func sendAll(t *testing.T, from *node, to peer.ID, msgs []string, hints ...string) {
	t.Helper()
	for _, m := range msgs {
		if err := from.Send(context.Background(), to, []byte(m), hints...); err != nil {
			t.Fatalf("Send %s: %v", m, err)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func waitMessages(t *testing.T, n *node, from peer.ID, want []string) {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("%d messages from %s", len(want), from), func() bool {
		return len(n.rec.messages(from)) >= len(want)
	})
	if got := n.rec.messages(from); !equalStrings(got, want) {
		t.Fatalf("received %d messages, want exactly %d in order:\n got %v\nwant %v", len(got), len(want), got, want)
	}
}
