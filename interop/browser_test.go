package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/daemon"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/transport"
)

// chromium returns the Chromium binary for the browser tests; without it,
// or without interop/browser's bundle, the test skips (fails with
// OCAPNET_INTEROP_REQUIRED=1).
func chromium(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("OCAPNET_CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	missing := func(why string) {
		msg := "browser interop needs Chromium (Debian package chromium) and interop/browser's packages and bundle (" + why +
			"); see docs/INTEROP.md: apt-get install chromium && npm ci --prefix interop/browser --ignore-scripts && npm run --prefix interop/browser build"
		if os.Getenv("OCAPNET_INTEROP_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(bin); err != nil {
		missing(err.Error())
	}
	for _, f := range []string{"browser/dist/bundle.js", "browser/node_modules/playwright-core"} {
		if _, err := os.Stat(f); err != nil {
			missing(err.Error())
		}
	}
	return bin
}

// browserDriver is interop/browser/driver.mjs driving headless Chromium.
type browserDriver struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     *os.File
	mu     sync.Mutex
	wait   map[int64]chan map[string]any
	nextID atomic.Int64
	stderr bytes.Buffer
	done   chan struct{}
	base   string // URL of the page server
}

func startBrowser(t *testing.T) *browserDriver {
	t.Helper()
	chrome := chromium(t)
	nodeBin := nodeBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir("browser")), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	d := &browserDriver{t: t, wait: map[int64]chan map[string]any{}, done: make(chan struct{}), base: "http://" + ln.Addr().String()}
	d.cmd = exec.Command(nodeBin, "browser/driver.mjs")
	d.cmd.Env = append(os.Environ(), "OCAPNET_CHROMIUM="+chrome)
	d.cmd.Stderr = &lockedWriter{mu: &d.mu, w: &d.stderr}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdin, d.in = r, w
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if m["event"] == "ready" {
				close(ready)
				continue
			}
			id, _ := m["id"].(float64)
			d.mu.Lock()
			ch := d.wait[int64(id)]
			delete(d.wait, int64(id))
			d.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
		d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.in.Close()
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			d.mu.Lock()
			t.Logf("browser driver stderr:\n%s", d.stderr.String())
			d.mu.Unlock()
		}
	})
	select {
	case <-ready:
	case <-d.done:
		t.Fatalf("browser driver ended: %s", d.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatal("browser driver not ready within 60 s")
	}
	return d
}

// call runs one driver request and returns its result.
func (d *browserDriver) call(req map[string]any, timeout time.Duration) any {
	d.t.Helper()
	id := d.nextID.Add(1)
	req["id"] = id
	ch := make(chan map[string]any, 1)
	d.mu.Lock()
	d.wait[id] = ch
	d.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := d.in.Write(append(b, '\n')); err != nil {
		d.t.Fatal(err)
	}
	select {
	case m := <-ch:
		if e, ok := m["error"]; ok {
			d.t.Fatalf("browser %v: %v", req["op"], e)
		}
		return m["result"]
	case <-d.done:
		d.t.Fatalf("browser driver ended during %v", req["op"])
	case <-time.After(timeout):
		d.t.Fatalf("browser %v: no answer within %v", req["op"], timeout)
	}
	return nil
}

func (d *browserDriver) open(page string) {
	d.call(map[string]any{"op": "open", "page": page, "url": d.base + "/index.html"}, 60*time.Second)
}

func (d *browserDriver) eval(page, js string) any {
	return d.call(map[string]any{"op": "eval", "page": page, "js": js}, 60*time.Second)
}

func jsStr(s string) string { b, _ := json.Marshal(s); return string(b) }

// received returns what a page received from peer from.
func (d *browserDriver) received(page, from string) []map[string]any {
	var out []map[string]any
	for _, r := range d.eval(page, "ocap.received()").([]any) {
		m := r.(map[string]any)
		if m["from"] == from {
			out = append(out, m)
		}
	}
	return out
}

func addrWith(t *testing.T, addrs []string, parts ...string) string {
	t.Helper()
	for _, a := range addrs {
		ok := !strings.Contains(a, "p2p-circuit")
		for _, p := range parts {
			ok = ok && strings.Contains(a, p)
		}
		if ok {
			return a
		}
	}
	t.Fatalf("no address with %v in %v", parts, addrs)
	return ""
}

// The browser and Go peers and relay: reservations over WebTransport,
// messages through the Go relay both ways, direct WebRTC-direct and
// WebTransport to Go peers, browser↔browser through the Go relay (signalling
// only), and the peer daemon's status page.
func TestBrowser(t *testing.T) {
	b := startBrowser(t)
	rl, err := relay.Start(relay.Options{KeySeed: randomSeed(t), ListenAddrs: []string{
		"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws", "/ip4/127.0.0.1/udp/0/quic-v1/webtransport"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Stop()
	relayWT := addrWith(t, rl.Addrs(), "/webtransport/", "/certhash/")
	relayTCP := addrWith(t, rl.Addrs(), "/tcp/")
	if strings.Contains(relayTCP, "/ws") {
		relayTCP = tcpOnly(t, rl.Addrs())
	}

	g := startGo(t, []string{"/ip4/127.0.0.1/tcp/0"}, relayTCP)
	waitFor(t, 15*time.Second, "the Go node's reservation", func() bool { return strings.Contains(strings.Join(g.ListenAddrs(), " "), "p2p-circuit") })

	b.open("A")
	startA := b.eval("A", fmt.Sprintf("ocap.start({relays: [%s]})", jsStr(relayWT))).(map[string]any)
	aID := startA["peerId"].(string)
	if !strings.Contains(fmt.Sprint(startA["addrs"]), "p2p-circuit") {
		t.Fatalf("browser A did not reserve on the Go relay over WebTransport: %v", startA["addrs"])
	}

	t.Run("browser to Go through the Go relay", func(t *testing.T) {
		res := b.eval("A", fmt.Sprintf("ocap.send(%s, 'deliver', ['from-browser'], [%s])", jsStr(g.PeerID().String()),
			jsStr(relayWT+"/p2p-circuit/p2p/"+g.PeerID().String()))).(map[string]any)
		if !strings.Contains(fmt.Sprint(res["remoteAddr"]), "p2p-circuit") {
			t.Errorf("browser → Go went over %v, want the relay circuit", res["remoteAddr"])
		}
		waitFor(t, 15*time.Second, "the browser's message at the Go node", func() bool {
			for _, m := range g.messages() {
				if m.From.String() == aID && string(m.Params) == `["from-browser"]` {
					return true
				}
			}
			return false
		})
	})
	t.Run("Go to browser through the Go relay", func(t *testing.T) {
		aPeer, _ := peer.Decode(aID)
		seq, err := g.Send(context.Background(), aPeer, "deliver", []byte(`["from-go"]`), relayTCP+"/p2p-circuit/p2p/"+aID)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "the Go message in the browser", func() bool { return len(b.received("A", g.PeerID().String())) > 0 })
		waitFor(t, 10*time.Second, "the browser's ack", func() bool { return g.ackedUpTo() >= seq })
	})
	for _, tr := range []struct{ name, listen, part string }{
		{"WebRTC-direct", "/ip4/127.0.0.1/udp/0/webrtc-direct", "/webrtc-direct/"},
		{"WebTransport", "/ip4/127.0.0.1/udp/0/quic-v1/webtransport", "/webtransport/"},
		{"WebSocket", "/ip4/127.0.0.1/tcp/0/ws", "/ws/"},
	} {
		t.Run("browser to Go directly over "+tr.name, func(t *testing.T) {
			gd := startGo(t, []string{tr.listen})
			addr := addrWith(t, gd.ListenAddrs(), tr.part)
			res := b.eval("A", fmt.Sprintf("ocap.send(%s, 'deliver', ['direct'], [%s])", jsStr(gd.PeerID().String()), jsStr(addr))).(map[string]any)
			if !strings.Contains(fmt.Sprint(res["remoteAddr"]), strings.Trim(tr.part, "/")) {
				t.Errorf("went over %v, want %s", res["remoteAddr"], tr.name)
			}
			waitFor(t, 15*time.Second, "the message at the Go node", func() bool { return len(gd.messages()) == 1 })
			// And back on the same connection.
			aPeer, _ := peer.Decode(aID)
			if _, err := gd.Send(context.Background(), aPeer, "deliver", []byte(`["back"]`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 15*time.Second, "the reply in the browser", func() bool { return len(b.received("A", gd.PeerID().String())) == 1 })
		})
	}
	t.Run("browser to browser through the Go relay", func(t *testing.T) {
		b.open("B")
		startB := b.eval("B", fmt.Sprintf("ocap.start({relays: [%s]})", jsStr(relayWT))).(map[string]any)
		bID := startB["peerId"].(string)
		// Only the /p2p-circuit/webrtc address, no fallback; a WebRTC
		// upgrade that fails (ICE on a loaded machine) is tried again, up to
		// three times, and reported.
		var res map[string]any
		for attempt := 1; attempt <= 3; attempt++ {
			res = b.eval("B", fmt.Sprintf("ocap.send(%s, 'deliver', ['from-B'], [%s], true).catch(e => ({error: String(e)}))",
				jsStr(aID), jsStr(relayWT+"/p2p-circuit/webrtc/p2p/"+aID))).(map[string]any)
			if res["error"] == nil {
				break
			}
			t.Logf("attempt %d: %v; page log: %v", attempt, res["error"], b.eval("B", "ocap.log()"))
		}
		if res["error"] != nil {
			t.Fatalf("B could not reach A over /p2p-circuit/webrtc in 3 attempts: %v", res["error"])
		}
		waitFor(t, 20*time.Second, "B's message at A", func() bool { return len(b.received("A", bID)) >= 1 })
		// The "whatever" stream to A runs on a WebRTC connection (the relay
		// only carried its signalling).
		onWebRTC := false
		for _, c := range b.eval("B", "ocap.connections()").([]any) {
			m := c.(map[string]any)
			if m["peer"] == aID && m["multiplexer"] == "/webrtc" && strings.Contains(fmt.Sprint(m["streams"]), "whatever") {
				onWebRTC = true
			}
		}
		if !onWebRTC {
			t.Errorf("B → A is not on a WebRTC connection: %v (send went over %v)", b.eval("B", "ocap.connections()"), res["remoteAddr"])
		}
	})
	t.Run("status page", func(t *testing.T) {
		dir := t.TempDir()
		d, err := daemon.Start(context.Background(), daemon.Options{
			Node: node.Options{Dir: dir, Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1}},
			API:  "127.0.0.1:0",
		})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Stop(context.Background())
		if _, err := d.Node().Send(context.Background(), g.PeerID(), "deliver", []byte(`[1]`), tcpOnly(t, g.ListenAddrs())); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the daemon's link to the Go node", func() bool {
			for _, p := range d.Node().Peers() {
				if p.ID == g.PeerID() && p.State == transport.StateConnected {
					return true
				}
			}
			return false
		})
		login, err := d.LoginURL() // a one-time link that sets the session cookie
		if err != nil {
			t.Fatal(err)
		}
		shot := filepath.Join(t.TempDir(), "status.png")
		if out := os.Getenv("OCAPNET_SCREENSHOT"); out != "" {
			shot = out
		}
		text := b.call(map[string]any{"op": "screenshot", "url": login, "wait": "connected", "path": shot}, 60*time.Second).(string)
		if !strings.Contains(text, g.PeerID().String()) || !strings.Contains(text, "connected") || !strings.Contains(text, d.Node().PeerID().String()) {
			t.Fatalf("status page text:\n%s", text)
		}
		if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
			t.Fatalf("screenshot %s: %v", shot, err)
		}
		t.Logf("status page screenshot: %s", shot)
	})
}
