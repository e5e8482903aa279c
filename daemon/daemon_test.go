package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/internal/testutil"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.Libp2pSingletons()...)
}

// logBuffer collects a daemon's logs as text.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testOptions are options for an in-process daemon on loopback.
func testOptions(t *testing.T) Options {
	return Options{Node: node.Options{Dir: t.TempDir(), Transport: transport.Config{
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1, ReconnectBaseDelay: 20 * time.Millisecond,
		ReconnectMaxDelay: 200 * time.Millisecond, RelayRedialBase: 50 * time.Millisecond, RelayRedialMax: 200 * time.Millisecond,
		DialTimeout: 2 * time.Second}}}
}

// startDaemon starts a daemon that is stopped when the test ends.
func startDaemon(t *testing.T, o Options) *Daemon {
	t.Helper()
	d, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return d
}

// apiDaemon starts a daemon with the API and returns it with its token.
func apiDaemon(t *testing.T, mod func(*Options)) (*Daemon, string) {
	t.Helper()
	o := testOptions(t)
	o.API = "127.0.0.1:0"
	if mod != nil {
		mod(&o)
	}
	d := startDaemon(t, o)
	tok, err := LoadToken(o.Node.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return d, tok
}

// call makes one API request; headers are "Name: value" strings.
func call(t *testing.T, method, url, body string, headers ...string) (int, string, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// sentTo returns how many messages the daemon gave a sequence number to for p.
func sentTo(d *Daemon, p string) uint64 {
	for _, s := range d.Node().Peers() {
		if s.ID.String() == p {
			return s.NextSeq
		}
	}
	return 0
}

// stdioDaemon is an in-process daemon driven through pipes like --stdio.
type stdioDaemon struct {
	*Daemon
	t     *testing.T
	in    *io.PipeWriter
	lines chan map[string]any
	raw   chan string
}

// countingWriter counts the writes made to it.
type countingWriter struct {
	w      io.Writer
	mu     sync.Mutex
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.w.Write(p)
}

func (c *countingWriter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func startStdio(t *testing.T, o Options) (*stdioDaemon, *countingWriter) {
	t.Helper()
	outR, outW := io.Pipe()
	inR, inW := io.Pipe()
	cw := &countingWriter{w: outW}
	o.Out = cw
	d := startDaemon(t, o)
	s := &stdioDaemon{Daemon: d, t: t, in: inW, lines: make(chan map[string]any, 100000), raw: make(chan string, 100000)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"event": "NOT JSON", "line": sc.Text()}
			}
			s.raw <- sc.Text()
			s.lines <- m
		}
	}()
	served := make(chan error, 1)
	go func() { served <- d.ServeStdio(context.Background(), inR) }()
	if err := d.WriteReady(cw); err != nil {
		t.Fatal(err)
	}
	// Registered after startDaemon's cleanup, so this runs first.
	t.Cleanup(func() {
		inW.Close()
		if err := <-served; err != nil {
			t.Errorf("ServeStdio: %v", err)
		}
		d.Stop(context.Background())
		outW.Close()
		<-read
	})
	if m := s.next("", 5*time.Second); m["event"] != "ready" {
		t.Fatalf("first line %v", m)
	}
	return s, cw
}

func (s *stdioDaemon) send(lines ...string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, strings.Join(lines, "\n")+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// next returns the next line with the given event ("" for any), skipping
// others, within d.
func (s *stdioDaemon) next(event string, d time.Duration) map[string]any {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-s.lines:
			if event == "" || m["event"] == event {
				return m
			}
		case <-deadline:
			s.t.Fatalf("no %q line within %v", event, d)
			return nil
		}
	}
}

// directAddr returns a daemon's TCP address (for hints).
func directAddr(t *testing.T, d *Daemon) string {
	t.Helper()
	for _, a := range d.Node().ListenAddrs() {
		if strings.Contains(a, "/tcp/") && !strings.Contains(a, "p2p-circuit") {
			return a
		}
	}
	t.Fatalf("no TCP address in %v", d.Node().ListenAddrs())
	return ""
}

func TestReadLine(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		line, long, err := readLine(br, 50)
		if long {
			got = append(got, "LONG")
		} else if len(line) > 0 {
			got = append(got, strings.TrimSpace(string(line)))
		}
		if err != nil {
			break
		}
	}
	if strings.Join(got, ",") != "short,LONG,last" {
		t.Fatalf("got %v", got)
	}
}

func TestCheckAPIAddr(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:80": true, "localhost:1": true, "0.0.0.0:80": false, "10.0.0.1:80": false, "nope": false} {
		if err := checkAPIAddr(addr, false); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if err := checkAPIAddr("0.0.0.0:80", true); err != nil {
		t.Error(err)
	}
}

// In-process stdio round: the ready line comes first, requests are
// answered, bad lines get errors, and Stop leaves no goroutine behind.
func TestStdioInProcess(t *testing.T) {
	s, _ := startStdio(t, testOptions(t))
	s.send(`{"op":"peers","id":{"a":1}}`, `nonsense`, `{"op":"info","id":7}`)
	if m := s.next("", 5*time.Second); m["event"] != "peers" || m["id"].(map[string]any)["a"] != 1.0 {
		t.Fatalf("peers: %v", m)
	}
	if m := s.next("", 5*time.Second); m["event"] != "error" || !strings.Contains(m["error"].(string), "malformed") || m["line"] != 2.0 {
		t.Fatalf("error: %v", m)
	}
	if m := s.next("", 5*time.Second); m["event"] != "info" || m["id"] != 7.0 || m["peerId"] != s.Node().PeerID().String() ||
		m["version"] == "" || m["health"].(map[string]any)["status"] != "ok" {
		t.Fatalf("info: %v", m)
	}
}

func TestOptionsValidation(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"remote without TLS":   func(o *Options) { o.API, o.AllowRemote = "127.0.0.1:0", true },
		"cert without key":     func(o *Options) { o.API, o.TLSCert = "127.0.0.1:0", "x.pem" },
		"tiny event log":       func(o *Options) { o.EventMaxBytes = 100 },
		"tiny SSE buffer":      func(o *Options) { o.SSEBufferBytes = 10 },
		"tiny SSE lag":         func(o *Options) { o.SSEMaxLag = 10 },
		"negative SSE timeout": func(o *Options) { o.SSEWriteTimeout = -time.Second },
		"sub-second max age":   func(o *Options) { o.EventMaxAge = time.Millisecond },
		"non-loopback API":     func(o *Options) { o.API = "0.0.0.0:0" },
	} {
		o := testOptions(t)
		mod(&o)
		if _, err := Start(context.Background(), o); err == nil || !strings.Contains(err.Error(), "invalid daemon options") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Stop is idempotent and safe to call concurrently.
func TestStopIdempotent(t *testing.T) {
	o := testOptions(t)
	o.API = "127.0.0.1:0"
	d, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Stop(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(o.Node.Dir); err != nil {
		t.Fatal(err)
	}
}
