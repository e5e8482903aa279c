//go:build chaos

package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// delayEnv carries the delaying proxy's routes to the helper process.
const delayEnv = "OCAPNET_CHAOS_DELAY"

// delayRoute is one listening address of the proxy and where it forwards.
type delayRoute struct {
	Listen string `json:"listen"` // host:port in the proxy's namespace
	Target string `json:"target"` // host:port of a peer
}

// delayProxy is the delaying TCP proxy: the test binary run as a child in
// a namespace of its own (TestMain), on the path of one pair of peers
// whose direct traffic is blocked, so their links go through it. Every
// chunk it reads is written on after the delay in force when it arrived,
// in order: latency, not loss. "delay MS" lines on its stdin set the delay.
type delayProxy struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	mu    sync.Mutex
	ready chan struct{}
}

func startDelayProxy(ns string, routes []delayRoute, logPath string) (*delayProxy, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(routes)
	cmd := inNS(ns, exe)
	cmd.Env = append(os.Environ(), delayEnv+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &delayProxy{cmd: cmd, in: in, ready: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if sc.Text() == "ready" {
				once.Do(func() { close(p.ready) })
			}
			fmt.Fprintln(logf, sc.Text())
		}
		cmd.Wait()
		logf.Close()
	}()
	select {
	case <-p.ready:
		return p, nil
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("delaying proxy not ready after 30 s (see %s)", logPath)
	}
}

func (p *delayProxy) setDelay(d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := fmt.Fprintf(p.in, "delay %d\n", d.Milliseconds())
	return err
}

func (p *delayProxy) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd.Process.Kill()
}

// delayMain runs the proxy (the child process).
func delayMain(raw string) int {
	var routes []delayRoute
	if err := json.Unmarshal([]byte(raw), &routes); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var delay atomic.Int64 // nanoseconds
	for _, r := range routes {
		l, err := net.Listen("tcp", r.Listen)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go acceptDelayed(l, r.Target, &delay)
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var ms int64
		if _, err := fmt.Sscanf(sc.Text(), "delay %d", &ms); err == nil {
			delay.Store(ms * int64(time.Millisecond))
			fmt.Printf("%s delay %d ms\n", time.Now().Format("15:04:05.000"), ms)
		}
	}
	return 0 // stdin closed: the test is gone
}

func acceptDelayed(l net.Listener, target string, delay *atomic.Int64) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			s, err := net.DialTimeout("tcp", target, 3*time.Second)
			if err != nil {
				c.Close()
				return
			}
			go pipeDelayed(c, s, delay)
			pipeDelayed(s, c, delay)
		}()
	}
}

type chunk struct {
	due time.Time
	b   []byte
}

// pipeDelayed copies src to dst, each chunk written after the delay in
// force when it was read, in order.
func pipeDelayed(src, dst net.Conn, delay *atomic.Int64) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{time.Now().Add(time.Duration(delay.Load())), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	defer dst.Close()
	defer src.Close()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d) // the delay itself
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}
