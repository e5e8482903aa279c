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

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/internal/testutil"
)

func testLogger() *slog.Logger {
	if os.Getenv("TRANSPORT_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.Libp2pSingletons()...)
}

// recorder is a Handler that records everything for assertions.
type recorder struct {
	mu         sync.Mutex
	msgs       map[peer.ID][]string
	events     []Event
	handshakes map[peer.ID][]string  // incarnations, in order
	channels   map[peer.ID][]uint64  // generations from OnChannel, in order
	ended      map[peer.ID][]error   // OnLinkEnded reasons
	onChannel  func(peer.ID, uint64) // called from OnChannel when set (before traffic)
}

func newRecorder() *recorder {
	return &recorder{msgs: map[peer.ID][]string{}, handshakes: map[peer.ID][]string{},
		channels: map[peer.ID][]uint64{}, ended: map[peer.ID][]error{}}
}

func (r *recorder) handler() Handler {
	return Handler{
		OnMessage: func(from peer.ID, msg []byte) {
			r.mu.Lock()
			r.msgs[from] = append(r.msgs[from], string(msg))
			r.mu.Unlock()
		},
		OnHandshake: func(p peer.ID, inc string) (bool, error) {
			r.mu.Lock()
			r.handshakes[p] = append(r.handshakes[p], inc)
			r.mu.Unlock()
			return false, nil
		},
		OnChannel: func(p peer.ID, gen uint64) {
			r.mu.Lock()
			r.channels[p] = append(r.channels[p], gen)
			f := r.onChannel
			r.mu.Unlock()
			if f != nil {
				f(p, gen)
			}
		},
		OnLinkEnded: func(p peer.ID, reason error) {
			r.mu.Lock()
			r.ended[p] = append(r.ended[p], reason)
			r.mu.Unlock()
		},
		OnEvent: func(e Event) {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		},
	}
}

func (r *recorder) linkEnded(p peer.ID) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.ended[p]...)
}

func (r *recorder) handshakesFrom(p peer.ID) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.handshakes[p]...)
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

func (r *recorder) sawState(p peer.ID, s State) bool {
	return len(r.eventsOf(func(e Event) bool {
		c, ok := e.(StateChanged)
		return ok && c.Peer.ID == p && c.Peer.State == s
	})) > 0
}

var waitFor = testutil.WaitFor

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
		KeySeed:       seed,
		IncarnationID: identity.NewIncarnationID(),
		Config: Config{
			ListenAddrs:        []string{"/ip4/127.0.0.1/tcp/0"},
			ReconnectBaseDelay: 20 * time.Millisecond,
			ReconnectMaxDelay:  200 * time.Millisecond,
			HandshakeTimeout:   2 * time.Second,
			WriteTimeout:       2 * time.Second,
			DialTimeout:        3 * time.Second,
			LivenessInterval:   -1,
			WakeInterval:       -1,
			Logger:             testLogger(),
		},
	}
}

// Host is the transport's libp2p host, for tests.
func (n *node) Host() host.Host { return n.h }

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

// sendAll sends msgs in order, each Send waiting (up to 20 s) for a channel.
func sendAll(t *testing.T, from *node, to peer.ID, msgs []string, hints ...string) {
	t.Helper()
	if err := sendAllErr(from, to, msgs, hints...); err != nil {
		t.Error(err)
	}
}

func sendAllErr(from *node, to peer.ID, msgs []string, hints ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, m := range msgs {
		if err := from.Send(ctx, to, []byte(m), hints...); err != nil {
			return fmt.Errorf("Send %s: %w", m, err)
		}
	}
	return nil
}

// sendAllLater runs sendAll in the background (for sends that wait for a
// peer to come back); the returned channel yields its result.
func sendAllLater(from *node, to peer.ID, msgs []string, hints ...string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- sendAllErr(from, to, msgs, hints...) }()
	return done
}

func waitSent(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sends did not complete")
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
