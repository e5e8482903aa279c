//go:build linux

package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/store"
)

// TestDaemonPerf measures two `ocapnet peer --stdio` processes on loopback:
// B echoes every message back to A; A keeps 200 round trips in flight
// (throughput), then one (sequential round trip time). Next to them: one
// fdatasync of a small write on the same disk and a loopback TCP round trip.
// It runs only with OCAPNET_DAEMON_PERF=1 (OCAPNET_DAEMON_PERF_RUNS runs,
// default 5; OCAPNET_DAEMON_PERF_N round trips per throughput run, default
// 20000; OCAPNET_DAEMON_PERF_BIN an ocapnet binary instead of this tree's;
// OCAPNET_DAEMON_PERF_COMPARE another binary measured in the same runs):
//
//	OCAPNET_DAEMON_PERF=1 go test -run TestDaemonPerf -v ./daemon/
func TestDaemonPerf(t *testing.T) {
	if os.Getenv("OCAPNET_DAEMON_PERF") != "1" {
		t.Skip("a measurement: set OCAPNET_DAEMON_PERF=1")
	}
	runs := envInt("OCAPNET_DAEMON_PERF_RUNS", 5)
	n := envInt("OCAPNET_DAEMON_PERF_N", 20000)
	bin := os.Getenv("OCAPNET_DAEMON_PERF_BIN") // another build to compare with
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "ocapnet")
		if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ocapnet").CombinedOutput(); err != nil {
			t.Fatalf("building ocapnet: %v\n%s", err, out)
		}
	}
	bins := []string{bin}
	if other := os.Getenv("OCAPNET_DAEMON_PERF_COMPARE"); other != "" {
		bins = append(bins, other) // measured in the same runs, interleaved
	}
	type series struct{ rates, rtts []float64 }
	res := make([]series, len(bins))
	var syncs, loops, commits []float64
	for r := 0; r < runs; r++ {
		for i, b := range bins {
			rate, rtt := measurePair(t, b, n)
			res[i].rates, res[i].rtts = append(res[i].rates, rate), append(res[i].rtts, rtt)
			t.Logf("run %d, %s: %.0f round trips/s with 200 in flight (%.0f messages/s), sequential round trip %.3f ms",
				r+1, b, rate, 2*rate, rtt)
		}
		fs, lo, co := fdatasyncTime(t), loopbackRTT(t), commitTime(t)
		syncs, loops, commits = append(syncs, fs), append(loops, lo), append(commits, co)
		t.Logf("run %d: fdatasync %.3f ms, store commit %.3f ms, loopback RTT %.3f ms", r+1, fs, co, lo)
	}
	med := func(xs []float64) (m, lo, hi float64) {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2], s[0], s[len(s)-1]
	}
	fm, fl, fh := med(syncs)
	lm, ll, lh := med(loops)
	cm, cl, ch := med(commits)
	t.Logf("median of %d runs (min–max):", runs)
	for i, b := range bins {
		rm, rl, rh := med(res[i].rates)
		tm, tl, th := med(res[i].rtts)
		t.Logf("  %s, 200 in flight: %.0f round trips/s (%.0f–%.0f) = %.0f messages/s delivered (both ways)", b, rm, rl, rh, 2*rm)
		t.Logf("  %s, sequential round trip: %.3f ms (%.3f–%.3f); / (2 fdatasyncs + loopback RTT) = %.2f; / (2 store commits + loopback RTT) = %.2f",
			b, tm, tl, th, tm/(2*fm+lm), tm/(2*cm+lm))
	}
	t.Logf("  fdatasync: %.3f ms (%.3f–%.3f); loopback TCP round trip: %.3f ms (%.3f–%.3f)", fm, fl, fh, lm, ll, lh)
	t.Logf("  store commit (one Update of one small record: bbolt's two fdatasyncs): %.3f ms (%.3f–%.3f)", cm, cl, ch)
}

// measurePair starts two daemons from bin, B echoing, and measures A's
// throughput with 200 in flight over n round trips and its median
// sequential round trip over 300.
func measurePair(t *testing.T, bin string, n int) (rate, rtt float64) {
	a, b := startPerfPeer(t, bin), startPerfPeer(t, bin)
	defer a.stop()
	defer b.stop()
	go b.echo(a.id)
	rate = a.pipelined(t, b, n, 200)
	rtt = a.sequential(t, b, 300)
	return rate, rtt
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type perfPeer struct {
	cmd   *exec.Cmd
	in    *bufio.Writer
	inRaw io.WriteCloser
	id    string
	addr  string
	msgs  chan perfLine // "message" events
	other chan perfLine // everything else
}

type perfLine struct {
	Event  string          `json:"event"`
	From   string          `json:"from"`
	Seq    uint64          `json:"seq"`
	Params json.RawMessage `json:"params"`
	Error  string          `json:"error"`
	PeerID string          `json:"peerId"`
	Addrs  []string        `json:"addrs"`
}

func startPerfPeer(t *testing.T, bin string) *perfPeer {
	t.Helper()
	p := &perfPeer{cmd: exec.Command(bin, "peer", "--stdio", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn"),
		msgs: make(chan perfLine, 1<<16), other: make(chan perfLine, 1<<16)}
	p.cmd.Stderr = os.Stderr
	out, _ := p.cmd.StdoutPipe()
	p.inRaw, _ = p.cmd.StdinPipe()
	p.in = bufio.NewWriterSize(p.inRaw, 1<<20)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	ready := make(chan perfLine, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		first := true
		for sc.Scan() {
			var l perfLine
			json.Unmarshal(sc.Bytes(), &l)
			switch {
			case first:
				ready <- l
				first = false
			case l.Event == "message":
				p.msgs <- l
			case l.Event == "error":
				panic("daemon error: " + sc.Text())
			default:
				select {
				case p.other <- l:
				default: // sent/acked/peer lines nobody waits for
				}
			}
		}
		close(p.msgs)
	}()
	select {
	case l := <-ready:
		p.id = l.PeerID
		p.addr = l.Addrs[0]
	case <-time.After(20 * time.Second):
		t.Fatal("no ready line")
	}
	return p
}

func (p *perfPeer) stop() {
	if p.cmd.Process != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
}

// echo sends every message it receives back to its sender, writing what is
// ready together.
func (p *perfPeer) echo(to string) {
	for m := range p.msgs {
		fmt.Fprintf(p.in, `{"op":"send","to":%q,"method":"echo","params":%s}`+"\n", to, m.Params)
		for more := true; more; {
			select {
			case m, ok := <-p.msgs:
				if !ok {
					return
				}
				fmt.Fprintf(p.in, `{"op":"send","to":%q,"method":"echo","params":%s}`+"\n", to, m.Params)
			default:
				more = false
			}
		}
		if p.in.Flush() != nil {
			return
		}
	}
}

func (p *perfPeer) sendTo(b *perfPeer, i int, hint bool) {
	h := ""
	if hint {
		h = fmt.Sprintf(`,"hints":[%q]`, b.addr)
	}
	fmt.Fprintf(p.in, `{"op":"send","to":%q,"method":"ping","params":[%d]%s}`+"\n", b.id, i, h)
}

// pipelined runs n round trips with window in flight; it returns round
// trips per second.
func (p *perfPeer) pipelined(t *testing.T, b *perfPeer, n, window int) float64 {
	t.Helper()
	p.sendTo(b, 0, true) // connect first
	p.in.Flush()
	p.waitEcho(t)
	start := time.Now()
	sent := 0
	for ; sent < window && sent < n; sent++ {
		p.sendTo(b, sent, false)
	}
	p.in.Flush()
	for got := 0; got < n; {
		p.waitEcho(t)
		got++
		for more := true; more; {
			select {
			case _, ok := <-p.msgs:
				if !ok {
					t.Fatal("A ended")
				}
				got++
			default:
				more = false
			}
		}
		for ; sent < n && sent-got < window; sent++ {
			p.sendTo(b, sent, false)
		}
		p.in.Flush()
	}
	return float64(n) / time.Since(start).Seconds()
}

// sequential returns the median round trip in ms over n round trips.
func (p *perfPeer) sequential(t *testing.T, b *perfPeer, n int) float64 {
	t.Helper()
	var d []float64
	for i := 0; i < n; i++ {
		start := time.Now()
		p.sendTo(b, i, false)
		p.in.Flush()
		p.waitEcho(t)
		d = append(d, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func (p *perfPeer) waitEcho(t *testing.T) {
	t.Helper()
	select {
	case _, ok := <-p.msgs:
		if !ok {
			t.Fatal("the daemon ended")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no echo within 30 s")
	}
}

// fdatasyncTime is the median time of a 128-byte write and fdatasync in ms.
func fdatasyncTime(t *testing.T) float64 {
	f, err := os.Create(filepath.Join(t.TempDir(), "sync"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := []byte(strings.Repeat("x", 128))
	var d []float64
	for i := 0; i < 200; i++ {
		start := time.Now()
		f.Write(buf)
		syscall.Fdatasync(int(f.Fd()))
		d = append(d, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// commitTime is the median time of one store commit (an event appended) in
// ms.
func commitTime(t *testing.T) float64 {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var d []float64
	for i := 0; i < 200; i++ {
		start := time.Now()
		if _, err := st.AppendEvent([]byte(`{"event":"x"}`)); err != nil {
			t.Fatal(err)
		}
		d = append(d, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// loopbackRTT is the median TCP round trip of 100 bytes on loopback in ms.
func loopbackRTT(t *testing.T) float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	var d []float64
	for i := 0; i < 1000; i++ {
		start := time.Now()
		c.Write(buf)
		io.ReadFull(c, buf)
		d = append(d, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(d)
	return d[len(d)/2]
}
