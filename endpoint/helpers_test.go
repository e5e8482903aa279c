package endpoint

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

func testLogger() *slog.Logger {
	if os.Getenv("ENDPOINT_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// nodeOptions are node options with short timers on loopback; listen ""
// picks a port.
func nodeOptions(dir, listen string) node.Options {
	if listen == "" {
		listen = "/ip4/127.0.0.1/tcp/0"
	}
	return node.Options{
		Dir:        dir,
		AckTimeout: 300 * time.Millisecond,
		AckDelay:   5 * time.Millisecond,
		Logger:     testLogger(),
		Transport: transport.Config{
			ListenAddrs:        []string{listen},
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

// testEP is an endpoint under test with its data directory and address.
type testEP struct {
	*Endpoint
	dir     string
	stopped bool
}

func startEP(t *testing.T, dir, listen string, opts Options) *testEP {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	ep, err := Start(context.Background(), nodeOptions(dir, listen), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	te := &testEP{Endpoint: ep, dir: dir}
	t.Cleanup(func() { te.stop(t) })
	return te
}

func (e *testEP) stop(t *testing.T) {
	t.Helper()
	if e.stopped {
		return
	}
	e.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// addr is e's TCP listen multiaddr with /p2p/.
func (e *testEP) addr(t *testing.T) string {
	t.Helper()
	for _, a := range e.Node().ListenAddrs() {
		if strings.Contains(a, "/tcp/") && !strings.Contains(a, "p2p-circuit") {
			return a
		}
	}
	t.Fatalf("no TCP address in %v", e.Node().ListenAddrs())
	return ""
}

// listen is e's listen multiaddr without /p2p/ (to restart on the same
// port).
func (e *testEP) listen(t *testing.T) string {
	a := e.addr(t)
	return a[:strings.Index(a, "/p2p/")]
}

// pair starts an exporter and a caller; URLs of the exporter carry its
// loopback address as their hint.
func pair(t *testing.T) (exp, caller *testEP) {
	t.Helper()
	exp = startEP(t, t.TempDir(), "", Options{})
	exp.opts.Hints = []string{exp.addr(t)}
	caller = startEP(t, t.TempDir(), "", Options{})
	return exp, caller
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var _ = peer.ID("")
