package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/wire"
)

var loopback = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"}

// The same key seed gives the same peer ID in Go and in JavaScript.
func TestSameSeedSamePeerID(t *testing.T) {
	seeds := []identity.Seed{{0xc8}, {}, randomSeed(t), randomSeed(t)}
	for _, s := range seeds {
		js := startJS(t, "--seed", s.Hex())
		if js.id() != s.PeerID().String() {
			t.Errorf("seed %s: JavaScript %s, Go %s", s.Hex(), js.id(), s.PeerID())
		}
		js.kill()
	}
}

// exchange sends one message each way between a Go node and a JS peer using
// the given hints and checks delivery and acknowledgement on both sides.
func exchange(t *testing.T, g *goNode, js *jsPeer, goHint, jsHint, tag string) {
	t.Helper()
	before := len(g.messages())
	js.do(map[string]any{"op": "send", "to": g.PeerID().String(), "method": "deliver", "params": []any{"from-js", tag}, "hints": []string{goHint}})
	waitFor(t, 20*time.Second, "the JS message at the Go node", func() bool { return len(g.messages()) > before })
	m := g.messages()[before]
	if m.From.String() != js.id() || m.Method != "deliver" || string(m.Params) != fmt.Sprintf(`["from-js","%s"]`, tag) {
		t.Fatalf("Go received %+v", m)
	}
	js.next("acked", 10*time.Second)

	jsID, err := peer.Decode(js.id())
	if err != nil {
		t.Fatal(err)
	}
	seq, err := g.Send(context.Background(), jsID, "deliver", []byte(fmt.Sprintf(`["from-go","%s"]`, tag)), jsHint)
	if err != nil {
		t.Fatal(err)
	}
	got := js.next("message", 20*time.Second)
	if got["from"] != g.PeerID().String() || fmt.Sprint(got["params"]) != fmt.Sprintf("[from-go %s]", tag) || got["seq"] != float64(seq) {
		t.Fatalf("JS received %v", got)
	}
	waitFor(t, 10*time.Second, "the JS peer's ack", func() bool { return g.ackedUpTo() >= seq })
}

func TestDirectTCPAndWebSocket(t *testing.T) {
	for _, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) {
			g := startGo(t, loopback)
			js := startJS(t, "--seed", randomSeed(t).Hex(), "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0/ws")
			want := "/tcp/"
			if tr == "ws" {
				want = "/ws/"
			}
			goAddr, jsAddr := g.addr(t, want), js.addr(want)
			if tr == "tcp" {
				goAddr, jsAddr = tcpOnly(t, g.ListenAddrs()), tcpOnly(t, js.ready["addrs"].([]any))
			}
			exchange(t, g, js, goAddr, jsAddr, tr)
		})
	}
}

func tcpOnly[T any](t *testing.T, addrs []T) string {
	for _, a := range addrs {
		s := fmt.Sprint(a)
		if strings.Contains(s, "/tcp/") && !strings.Contains(s, "/ws") && !strings.Contains(s, "p2p-circuit") {
			return s
		}
	}
	t.Fatalf("no plain TCP address in %v", addrs)
	return ""
}

// JS ↔ Go through an ocapnet (Go) relay: both reserve; each reaches the
// other by its circuit address.
func TestThroughGoRelay(t *testing.T) {
	rl, err := relay.Start(relay.Options{KeySeed: randomSeed(t), ListenAddrs: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Stop()
	var relayWS string
	for _, a := range rl.Addrs() {
		if strings.Contains(a, "/ws/") {
			relayWS = a
		}
	}
	g := startGo(t, []string{"/ip4/127.0.0.1/tcp/0"}, relayWS)
	js := startJS(t, "--seed", randomSeed(t).Hex(), "--reserve", relayWS)
	if r := js.next("reserved", 15*time.Second); !strings.Contains(fmt.Sprint(r["addrs"]), "p2p-circuit") {
		t.Fatalf("JS did not reserve on the Go relay: %v", r)
	}
	waitFor(t, 10*time.Second, "the Go node's reservation", func() bool { return strings.Contains(strings.Join(g.ListenAddrs(), " "), "p2p-circuit") })
	exchange(t, g, js, relayWS+"/p2p-circuit/p2p/"+g.PeerID().String(), relayWS+"/p2p-circuit/p2p/"+js.id(), "go-relay")
	for _, p := range g.Peers() {
		if p.ID.String() == js.id() && !strings.Contains(p.RemoteAddr, "p2p-circuit") {
			t.Fatalf("Go ↔ JS link is not relayed: %s", p.RemoteAddr)
		}
	}
}

// Go ↔ Go through a js-libp2p relay configured like upstream's
// (applyDefaultLimit: false).
func TestGoGoThroughJSRelay(t *testing.T) {
	jsRelay := startJS(t, "--seed", randomSeed(t).Hex(), "--relay-server", "--listen", "/ip4/127.0.0.1/tcp/0")
	relayAddr := tcpOnly(t, jsRelay.ready["addrs"].([]any))
	a := startGo(t, []string{"/ip4/127.0.0.1/tcp/0"}, relayAddr)
	b := startGo(t, []string{"/ip4/127.0.0.1/tcp/0"}, relayAddr)
	waitFor(t, 15*time.Second, "reservations on the JS relay", func() bool {
		return strings.Contains(strings.Join(a.ListenAddrs(), " "), "p2p-circuit") && strings.Contains(strings.Join(b.ListenAddrs(), " "), "p2p-circuit")
	})
	circuit := relayAddr + "/p2p-circuit/p2p/" + b.PeerID().String()
	for i := 1; i <= 20; i++ {
		if _, err := a.Send(context.Background(), b.PeerID(), "m", []byte(fmt.Sprintf("[%d]", i)), circuit); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "20 messages through the JS relay", func() bool { return len(b.messages()) == 20 })
	for i, m := range b.messages() {
		if string(m.Params) != fmt.Sprintf("[%d]", i+1) {
			t.Fatalf("message %d: %s", i, m.Params)
		}
	}
	waitFor(t, 10*time.Second, "acks", func() bool { return a.ackedUpTo() == 20 })
	for _, p := range a.Peers() {
		if p.ID == b.PeerID() && !strings.Contains(p.RemoteAddr, "p2p-circuit") {
			t.Fatalf("Go ↔ Go link is not relayed: %s", p.RemoteAddr)
		}
	}
}

// 1,000 numbered messages each way, in order with acks, while the JS peer is
// killed (SIGKILL) and restarted with the same seed and state mid-stream.
func TestNumberedStreamsWithJSRestart(t *testing.T) {
	const n = 1000
	g := startGo(t, []string{"/ip4/127.0.0.1/tcp/0"})
	seed := randomSeed(t).Hex()
	stateFile := filepath.Join(t.TempDir(), "js-state.json")
	js := startJS(t, "--seed", seed, "--state", stateFile, "--listen", "/ip4/127.0.0.1/tcp/0")
	jsAddr := tcpOnly(t, js.ready["addrs"].([]any))
	jsListen := jsAddr[:strings.Index(jsAddr, "/p2p/")]
	jsID, _ := peer.Decode(js.id())
	goAddr := g.addr(t, "/tcp/")

	// Go → JS: all durable at once; JS → Go: the JS peer numbers its own.
	go func() {
		for i := 1; i <= n; i++ {
			if _, err := g.Send(context.Background(), jsID, "n", []byte(fmt.Sprintf("[%d]", i)), jsAddr); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond) // pacing, so that the kill lands mid-stream
		}
	}()
	js.do(map[string]any{"op": "sendUntil", "to": g.PeerID().String(), "upTo": n, "hints": []string{goAddr}, "delayMs": 2})

	var jsGot []int
	collect := func(p *jsPeer, until func() bool, d time.Duration) {
		deadline := time.After(d)
		for !until() {
			select {
			case m := <-p.events:
				if m["event"] == "message" {
					jsGot = append(jsGot, int(m["seq"].(float64)))
				}
			case <-deadline:
				t.Fatalf("JS received %d messages (last %v) within %v", len(jsGot), jsGot[max(0, len(jsGot)-1):], d)
			}
		}
	}
	// Kill it mid-stream in both directions.
	collect(js, func() bool { return len(jsGot) >= 300 && len(g.messages()) >= 100 }, 60*time.Second)
	js.cmd.Process.Signal(syscall.SIGKILL)
	<-js.done
	beforeKill := len(jsGot)
	goBefore := len(g.messages())
	if goBefore >= n || beforeKill >= n {
		t.Fatalf("the kill was not mid-stream: Go had %d, JS %d", goBefore, beforeKill)
	}

	js2 := startJS(t, "--seed", seed, "--state", stateFile, "--listen", jsListen)
	if js2.ready["incarnationId"] != js.ready["incarnationId"] {
		t.Fatalf("restart changed the JS incarnation")
	}
	js2.do(map[string]any{"op": "sendUntil", "to": g.PeerID().String(), "upTo": n, "hints": []string{goAddr}})
	js2.do(map[string]any{"op": "resume", "to": g.PeerID().String()})
	collect(js2, func() bool { return len(jsGot) > 0 && jsGot[len(jsGot)-1] == n }, 90*time.Second)

	// JS side: in order; after the kill only repeats of what the killed
	// process may have printed before saving, never a skip.
	seen := map[int]bool{}
	for i, s := range jsGot {
		if i > 0 && s > jsGot[i-1]+1 {
			t.Fatalf("JS skipped from %d to %d", jsGot[i-1], s)
		}
		if i > 0 && s <= jsGot[i-1] && i != beforeKill {
			t.Fatalf("JS went back from %d to %d outside the restart", jsGot[i-1], s)
		}
		seen[s] = true
	}
	if len(seen) != n {
		t.Fatalf("JS received %d distinct messages, want %d", len(seen), n)
	}
	// Go side: exactly 1..n once, in order (the Go receiver guarantees it).
	waitFor(t, 60*time.Second, "1,000 messages at the Go node", func() bool { return len(g.messages()) >= n })
	for i, m := range g.messages() {
		if m.Seq != uint64(i+1) || string(m.Params) != fmt.Sprintf("[%d]", i+1) {
			t.Fatalf("Go message %d: seq %d params %s", i, m.Seq, m.Params)
		}
	}
	if len(g.messages()) != n {
		t.Fatalf("Go received %d messages, want %d", len(g.messages()), n)
	}
	deadline := time.Now().Add(60 * time.Second)
	for g.ackedUpTo() != n {
		if time.Now().After(deadline) {
			js2.do(map[string]any{"op": "state", "to": g.PeerID().String()})
			t.Fatalf("Go's messages acknowledged up to %d of %d; Go peers %+v; JS state %v; Go log:\n%s",
				g.ackedUpTo(), n, g.Peers(), js2.next("state", 5*time.Second), g.logText())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	js2.do(map[string]any{"op": "state", "to": g.PeerID().String()})
	waitFor(t, 30*time.Second, "the JS window to empty", func() bool {
		js2.do(map[string]any{"op": "state", "to": g.PeerID().String()})
		st := js2.next("state", 5*time.Second)
		return st["pending"] == 0.0
	})
	t.Logf("JS killed after %d of its receptions (Go had %d); JS printed %d messages in all", beforeKill, goBefore, len(jsGot))
}

// Oversize and malformed frames: from JS to Go the Go node reports the
// documented errors and keeps the link usable; from Go to JS the JS peer's
// lpStream reports its errors.
func TestBadFramesBothWays(t *testing.T) {
	g := startGo(t, []string{"/ip4/127.0.0.1/tcp/0"})
	js := startJS(t, "--seed", randomSeed(t).Hex(), "--listen", "/ip4/127.0.0.1/tcp/0")
	goAddr := g.addr(t, "/tcp/")
	to := g.PeerID().String()
	js.do(map[string]any{"op": "send", "to": to, "method": "m", "params": []int{1}, "hints": []string{goAddr}})
	waitFor(t, 10*time.Second, "a first message", func() bool { return len(g.messages()) == 1 })

	// A length over 1 MiB (3-byte prefix 0xffff7f = 2 MiB - 1) and a 4-byte
	// prefix: the Go transport closes that channel and counts it.
	for _, hex := range []string{"ffff7f", "80808001"} {
		js.do(map[string]any{"op": "raw", "to": to, "hex": hex})
		js.next("rawSent", 10*time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, g, "ocapnet_transport_oversize_frames_total") < 2 {
		if time.Now().After(deadline) {
			var evs []string
			for len(js.events) > 0 {
				evs = append(evs, fmt.Sprint(<-js.events))
			}
			t.Fatalf("oversize frames counted: %v; JS events: %v\nGo log:\n%s", metricValue(t, g, "ocapnet_transport_oversize_frames_total"), evs, g.logText())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	// Malformed JSON in a frame: dropped with a log line, not acknowledged.
	js.do(map[string]any{"op": "raw", "to": to, "hex": "056e6f6e6a73"}) // "nonjs"
	js.next("rawSent", 10*time.Second)
	waitFor(t, 10*time.Second, "the malformed frame logged", func() bool { return strings.Contains(g.logText(), "malformed frame dropped") })
	// The link still works.
	js.do(map[string]any{"op": "send", "to": to, "method": "m", "params": []int{2}, "hints": []string{goAddr}})
	waitFor(t, 10*time.Second, "a message after bad frames", func() bool { return len(g.messages()) == 2 })
	if !strings.Contains(g.logText(), "oversize inbound frame") {
		t.Errorf("Go log lacks the oversize warning:\n%s", g.logText())
	}

	// Go → JS, on a raw stream after a proper handshake.
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	info, err := peer.AddrInfoFromString(tcpOnly(t, js.ready["addrs"].([]any)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		raw  []byte
		want string
	}{
		{[]byte{0xff, 0xff, 0x7f}, "InvalidDataLengthError"},
		{[]byte{0x80, 0x80, 0x80, 0x01}, "InvalidDataLengthLengthError"},
		{append([]byte{5}, "nonjs"...), "frameError"},
	} {
		s, err := h.NewStream(ctx, info.ID, wire.ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{IncarnationID: identity.NewIncarnationID()})); err != nil {
			t.Fatal(err)
		}
		if _, err := wire.NewReader(s, 0).ReadFrame(); err != nil {
			t.Fatalf("handshakeAck: %v", err)
		}
		s.Write(c.raw)
		// Events about the raw host only: the Go node's own streams to the
		// JS peer come and go meanwhile (it replaces them when one ends).
		if c.want == "frameError" {
			if ev := js.nextFrom("frameError", h.ID().String(), 10*time.Second); !strings.Contains(fmt.Sprint(ev["error"]), "JSON") {
				t.Errorf("JS frame error %v, want a JSON parse error", ev)
			}
		} else if ev := js.nextFrom("readError", h.ID().String(), 10*time.Second); ev["name"] != c.want {
			t.Errorf("JS read error %v, want %s", ev, c.want)
		}
		s.Reset()
	}
}

// metricValue reads a counter or gauge from the Go node's registry.
func metricValue(t *testing.T, g *goNode, name string) float64 {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			return v
		}
	}
	return 0
}
