package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is a child process speaking JSON lines on stdio: an `ocapnet peer
// --stdio` daemon or a benchpeer.mjs JavaScript peer. Lines written to it
// go through one writer goroutine (so a reader never blocks on the other
// pipe), and every stdout line is handed to onLine.
type proc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    chan []byte
	ready  map[string]any
	stderr *tailBuffer
	done   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
}

// startProc starts the command, hands each stdout line to onLine (from one
// goroutine; the first line whose "event" is ready is kept as the ready
// line and not handed over), and waits for the ready line.
func startProc(name string, args []string, dir string, onLine func([]byte)) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	p := &proc{cmd: cmd, out: make(chan []byte, 1<<14), stderr: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	readyCh := make(chan map[string]any, 1)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		gotReady := false
		for sc.Scan() {
			line := sc.Bytes()
			if !gotReady && bytes.Contains(line, []byte(`"ready"`)) {
				var m map[string]any
				if json.Unmarshal(line, &m) == nil && m["event"] == "ready" {
					gotReady = true
					readyCh <- m
					continue
				}
			}
			onLine(line)
		}
		_ = cmd.Wait()
	}()
	go func() { // the one writer of stdin
		defer p.wg.Done()
		w := bufio.NewWriterSize(p.in, 64<<10)
		for {
			var line []byte
			select {
			case line = <-p.out:
			case <-p.done:
				return
			}
			if line == nil {
				return
			}
			w.Write(line)
		more:
			for {
				select {
				case line = <-p.out:
					if line == nil {
						w.Flush()
						return
					}
					w.Write(line)
				default:
					break more
				}
			}
			if w.Flush() != nil {
				return
			}
		}
	}()
	select {
	case p.ready = <-readyCh:
		return p, nil
	case <-p.done:
		p.close()
		return nil, fmt.Errorf("%s exited before its ready line: %s", filepath.Base(name), p.stderr.String())
	case <-time.After(60 * time.Second):
		p.close()
		return nil, fmt.Errorf("%w: no ready line from %s within 60 s: %s", ErrTimeout, filepath.Base(name), p.stderr.String())
	}
}

// send queues one JSON line (v is marshalled; a newline is added).
func (p *proc) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	select {
	case p.out <- append(b, '\n'):
		return nil
	case <-p.done:
		return fmt.Errorf("process exited: %s", p.stderr.String())
	}
}

func (p *proc) peerID() string { s, _ := p.ready["peerId"].(string); return s }

// addr is the first ready address containing want and no circuit.
func (p *proc) addr(want string) (string, error) {
	as, _ := p.ready["addrs"].([]any)
	for _, a := range as {
		if s, _ := a.(string); strings.Contains(s, want) && !strings.Contains(s, "p2p-circuit") {
			return s, nil
		}
	}
	return "", fmt.Errorf("no %q address in the ready line %v", want, p.ready)
}

// close ends stdin, sends SIGTERM, and kills after 10 s.
func (p *proc) close() {
	if p.closed.Swap(true) {
		return
	}
	select {
	case p.out <- nil:
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.in.Close()
	p.wg.Wait()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// lineEvent is the part of a stdout event line the echo needs (the daemon's
// and benchpeer.mjs's message events have the same shape).
type lineEvent struct {
	Event  string          `json:"event"`
	From   string          `json:"from"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Error  string          `json:"error"`
}

// stdioPair is two stdio processes; the bench reads B's message events and
// writes the echo to B's stdin.
type stdioPair struct {
	a, b   *proc
	hint   string
	hinted atomic.Bool
	onEcho atomic.Value // func(int)
	errs   atomic.Int64
	lastEr atomic.Value // string
	// reserved is closed when B reports a relay reservation (benchpeer.mjs).
	reserved     chan struct{}
	reservedOnce sync.Once
}

// newStdioPair starts B then A with the given command lines (mkArgs gets a
// role "a" or "b"), and returns once both are ready; hintFor gives A's hint
// for B.
func newStdioPair(exe, dir string, mkArgs func(role string) []string, hintFor func(b *proc) (string, error)) (*stdioPair, error) {
	p := &stdioPair{reserved: make(chan struct{})}
	p.onEcho.Store(func(int) {})
	var aID atomic.Value
	var err error
	p.b, err = startProc(exe, mkArgs("b"), dir, func(line []byte) {
		var ev lineEvent
		if json.Unmarshal(line, &ev) != nil {
			return
		}
		switch ev.Event {
		case "message":
			if ev.Method == "req" {
				to, _ := aID.Load().(string)
				_ = p.b.send(map[string]any{"op": "send", "to": to, "method": "echo", "params": ev.Params})
			}
		case "reserved":
			p.reservedOnce.Do(func() { close(p.reserved) })
		case "error", "sendError":
			p.noteErr(ev.Error)
		}
	})
	if err != nil {
		return nil, err
	}
	p.a, err = startProc(exe, mkArgs("a"), dir, func(line []byte) {
		var ev lineEvent
		if json.Unmarshal(line, &ev) != nil {
			return
		}
		switch ev.Event {
		case "message":
			if k, ok := parseEcho(ev.Params); ok && ev.Method == "echo" {
				p.onEcho.Load().(func(int))(k)
			}
		case "error", "sendError":
			p.noteErr(ev.Error)
		}
	})
	if err != nil {
		p.b.close()
		return nil, err
	}
	aID.Store(p.a.peerID())
	if p.hint, err = hintFor(p.b); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *stdioPair) noteErr(s string) {
	p.errs.Add(1)
	p.lastEr.Store(s)
}

func (p *stdioPair) setEcho(f func(int)) { p.onEcho.Store(f) }

func (p *stdioPair) request(k int) error {
	req := map[string]any{"op": "send", "to": p.b.peerID(), "method": "req", "params": json.RawMessage(echoParams(k))}
	if !p.hinted.Swap(true) {
		req["hints"] = []string{p.hint} // once, as an application would
	}
	if s, _ := p.lastEr.Load().(string); s != "" {
		return fmt.Errorf("%d error events, the last: %s", p.errs.Load(), s)
	}
	return p.a.send(req)
}

func (p *stdioPair) close() {
	p.a.close()
	p.b.close()
}

// newDaemonStdioPair: two `ocapnet peer --stdio` processes.
func newDaemonStdioPair(e *env, path string) (*stdioPair, error) {
	if e.o.PeerExe == "" {
		return nil, skip("the daemon pair needs the ocapnet binary (run `ocapnet bench`)")
	}
	dir := filepath.Join(e.tmp, fmt.Sprintf("daemon-stdio-%s-%d", path, goNodesSeq.Add(1)))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return newStdioPair(e.o.PeerExe, dir, func(role string) []string {
		args := []string{"peer", "--data", filepath.Join(dir, role), "--listen", "/ip4/127.0.0.1/tcp/0", "--stdio", "--log-level", "error"}
		if path == "relay" && role == "b" {
			args = append(args, "--relay", e.rl.Addrs()[0])
		}
		return args
	}, func(b *proc) (string, error) { return peerHint(e, path, b) })
}

// peerHint is A's hint for B: B's TCP address, or its circuit address on
// the bench's relay.
func peerHint(e *env, path string, b *proc) (string, error) {
	if path == "relay" {
		if b.peerID() == "" {
			return "", errors.New("no peer ID in the ready line")
		}
		return e.rl.Addrs()[0] + "/p2p-circuit/p2p/" + b.peerID(), nil
	}
	return b.addr("/tcp/")
}
