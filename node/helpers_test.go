package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/internal/testutil"
	"github.com/ocapnet/ocapnet/transport"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(crashRoleEnv); role != "" {
		os.Exit(crashChild(role))
	}
	goleak.VerifyTestMain(m, testutil.Libp2pSingletons()...)
}

func testLogger() *slog.Logger {
	if os.Getenv("NODE_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recorder records what a node delivers.
type recorder struct {
	refuse func(Message) bool // set before traffic starts
	mu     sync.Mutex
	msgs   []Message
	events []Event
}

func (r *recorder) handler() Handler {
	return Handler{
		OnMessage: func(m Message) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.refuse != nil && r.refuse(m) {
				return errors.New("refused by the test")
			}
			r.msgs = append(r.msgs, m)
			return nil
		},
		OnEvent: func(e Event) {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		},
	}
}

func (r *recorder) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

func eventsOf[T Event](r *recorder) []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []T
	for _, e := range r.events {
		if v, ok := e.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

var waitFor = testutil.WaitFor

// testNode is a node under test with its recorder and options.
type testNode struct {
	*Node
	rec  *recorder
	opts Options
}

// fastOptions are node options with short timers for tests.
func fastOptions(dir string) Options {
	return Options{
		Dir:        dir,
		AckTimeout: 300 * time.Millisecond,
		Logger:     testLogger(),
		Transport: transport.Config{
			ListenAddrs:        []string{"/ip4/127.0.0.1/tcp/0"},
			ReconnectBaseDelay: 20 * time.Millisecond,
			ReconnectMaxDelay:  200 * time.Millisecond,
			HandshakeTimeout:   2 * time.Second,
			WriteTimeout:       2 * time.Second,
			DialTimeout:        3 * time.Second,
			LivenessInterval:   -1,
			WakeInterval:       -1,
		},
	}
}

// start starts a node on opts; it is stopped at the end of the test unless
// stopped before.
func start(t *testing.T, opts Options) *testNode {
	t.Helper()
	rec := &recorder{}
	n, err := Start(context.Background(), opts, rec.handler())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { stop(t, n) })
	return &testNode{Node: n, rec: rec, opts: opts}
}

func stop(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// addr returns n's TCP listen address (with /p2p/).
func (n *testNode) addr(t *testing.T) string {
	t.Helper()
	for _, a := range n.ListenAddrs() {
		if strings.Contains(a, "/tcp/") && !strings.Contains(a, "p2p-circuit") {
			return a
		}
	}
	t.Fatalf("no TCP address in %v", n.ListenAddrs())
	return ""
}

// port returns the TCP listen multiaddr without /p2p/, for a restart on
// the same port.
func (n *testNode) listen(t *testing.T) string {
	a := n.addr(t)
	return a[:strings.Index(a, "/p2p/")]
}

func param(i int) []byte { return fmt.Appendf(nil, "[%d]", i) }

// checkInOrder asserts that msgs from peer carry params 1..want in order,
// each exactly once, none marked as a redelivery.
func checkInOrder(t *testing.T, msgs []Message, from peer.ID, want int) {
	t.Helper()
	i := 0
	for _, m := range msgs {
		if m.From != from {
			continue
		}
		i++
		if string(m.Params) != string(param(i)) || m.Redelivery {
			t.Fatalf("message %d from %s: params %s seq %d redelivery %v", i, from, m.Params, m.Seq, m.Redelivery)
		}
	}
	if i != want {
		t.Fatalf("got %d messages from %s, want %d", i, from, want)
	}
}

func countFrom(msgs []Message, from peer.ID) int {
	c := 0
	for _, m := range msgs {
		if m.From == from {
			c++
		}
	}
	return c
}
