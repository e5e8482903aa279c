//go:build chaos

package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/internal/lazyfs"
)

// proc is one ocapnet process (relay or peer) in its namespace, in its own
// process group; it can be killed and started again from the same data
// directory, which for peers lives on a lazyfs mount (power loss).
type proc struct {
	name, ns, ip string
	args         []string
	env          []string
	seed         identity.Seed
	h            *harness
	fs           *lazyfs.FS // the data directory's filesystem (nil: a plain directory)

	mu    sync.Mutex
	cmd   *exec.Cmd
	in    chan string // stdin lines (buffered; dropped when full)
	done  chan struct{}
	alive bool
}

func (p *proc) id() string { return p.seed.PeerID().String() }

func (p *proc) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := inNS(p.ns, append([]string{p.h.bin}, p.args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	// Its own process group (so a pause stops everything it is), and dead
	// with the test process even if that is killed by a timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.h.t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		p.h.t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(p.h.dir, p.name+".stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.h.t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		p.h.t.Fatal(err)
	}
	in := make(chan string, 4096)
	done := make(chan struct{})
	p.cmd, p.in, p.done, p.alive = cmd, in, done, true
	go func() {
		for l := range in {
			if _, err := stdin.Write([]byte(l + "\n")); err != nil {
				break
			}
		}
		for range in {
		}
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			p.h.record(p, sc.Bytes())
		}
		cmd.Wait()
		logf.Close()
		close(done)
	}()
}

// send queues an input line; it is dropped (never "sent") if the process
// does not take input (stopped or dead).
func (p *proc) send(line string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.alive {
		return false
	}
	select {
	case p.in <- line:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process group and waits until the process is reaped.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done, in, alive := p.cmd, p.done, p.in, p.alive
	p.alive = false
	p.mu.Unlock()
	if cmd == nil || !alive {
		return
	}
	// nsenter execs the binary, so the pid is ocapnet's own and the
	// process group is its.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	close(in)
}

// powerCut kills the process and cuts the power of its data directory's
// filesystem: everything it did not fsync is lost.
func (p *proc) powerCut() error {
	p.kill()
	if p.fs == nil {
		return errors.New("no lazyfs mount")
	}
	var err error
	for range 50 { // the mount may stay busy for a moment after the kill
		if err = p.fs.PowerCut(); !errors.Is(err, lazyfs.ErrBusy) {
			return err
		}
		time.Sleep(100 * time.Millisecond) // retrying an unmount; nothing to wait on
	}
	return err
}

// signal sends s to the process's whole process group.
func (p *proc) signal(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.alive {
		syscall.Kill(-p.cmd.Process.Pid, s)
	}
}

// event is one line a process printed, with when the harness read it.
type event struct {
	at   time.Time
	proc string
	m    map[string]any
}

type harness struct {
	t    testing.TB
	bin  string
	dir  string
	net  *netns
	mu   sync.Mutex
	evs  []event
	logf *os.File
	sent atomic.Int64 // "sent" lines seen
}

func (h *harness) record(p *proc, line []byte) {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return
	}
	if m["event"] == "sent" {
		h.sent.Add(1)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.evs = append(h.evs, event{time.Now(), p.name, m})
	fmt.Fprintf(h.logf, "%s %s %s\n", time.Now().Format("15:04:05.000"), p.name, line)
}

func (h *harness) events() []event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.evs)
}
