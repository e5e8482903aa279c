package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// ChildEnv names the measurement a child process runs: a command that sees
// it set calls RunChild instead of its usual work.
const ChildEnv = "OCAPNET_BENCH_CHILD"

// childRequest is the one JSON line a child reads on stdin.
type childRequest struct {
	Dir      string        `json:"dir"`
	Peers    []string      `json:"peers,omitempty"` // scale-node: full multiaddrs of the peers to connect to
	Liveness time.Duration `json:"liveness,omitempty"`
	Rounds   int           `json:"rounds,omitempty"`
	// CPUProfile, when set, is where the child writes a CPU profile of
	// its idle rounds (and the live heap after them to CPUProfile.heap).
	CPUProfile string `json:"cpuprofile,omitempty"`
}

// childReport is the one JSON line a child writes on stdout.
type childReport struct {
	Error string `json:"error,omitempty"`
	// Heap and RSS before (a started node with no peers, or the bare
	// process for startup) and after.
	Heap0, RSS0, Heap, RSS float64
	Connected              int
	ConnectSeconds         float64
	CPU                    float64 // fraction of a core while idle
	StartSeconds           float64
}

// RunChild runs the measurement named by $OCAPNET_BENCH_CHILD, reading its
// request from in and writing its report to out; it returns the exit code.
func RunChild(in io.Reader, out io.Writer) int {
	var req childRequest
	line, err := bufio.NewReader(in).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	var rep childReport
	if err == nil {
		switch kind := os.Getenv(ChildEnv); kind {
		case "scale-node":
			rep, err = childScale(req)
		case "startup":
			rep, err = childStartup(req)
		default:
			err = fmt.Errorf("unknown child %q", kind)
		}
	}
	if err != nil {
		rep.Error = err.Error()
	}
	b, _ := json.Marshal(rep)
	fmt.Fprintf(out, "%s\n", b)
	if err != nil {
		return 1
	}
	return 0
}

// heapInUse is the live heap after two collections.
func heapInUse() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc)
}

// childScale: a node in this process opens channels to the given peers;
// once all are connected, it lets one liveness round pass (the tail of
// connecting: identify, the first round-trip measurements, collecting the
// handshakes' garbage), then idles for Rounds liveness rounds, measuring
// its CPU use, then its heap and RSS.
func childScale(req childRequest) (childReport, error) {
	ctx := context.Background()
	var rep childReport
	n, err := node.Start(ctx, node.Options{Dir: req.Dir, Logger: quietLog(), MaxIdlePeers: len(req.Peers) + 10,
		Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1, MaxConnections: len(req.Peers) + 10,
			LivenessInterval: req.Liveness, LivenessTimeout: req.Liveness}}, node.Handler{})
	if err != nil {
		return rep, err
	}
	defer n.Stop(ctx)
	rep.Heap0, rep.RSS0 = heapInUse(), rss()
	tr := n.Transport()
	t0 := time.Now()
	for _, a := range req.Peers {
		info, err := peer.AddrInfoFromString(a)
		if err != nil {
			return rep, err
		}
		tr.SetPinned(info.ID, true)
		if err := tr.RegisterHints(info.ID, a); err != nil {
			return rep, err
		}
	}
	connected := func() int {
		c := 0
		for _, p := range tr.Peers() {
			if p.State == transport.StateConnected {
				c++
			}
		}
		return c
	}
	waitUntil(5*time.Minute, 50*time.Millisecond, func() bool { return connected() >= len(req.Peers) })
	rep.ConnectSeconds = time.Since(t0).Seconds()
	time.Sleep(req.Liveness) // settling: not idle yet, not measured
	runtime.GC()
	if req.CPUProfile != "" {
		f, err := os.Create(req.CPUProfile)
		if err != nil {
			return rep, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return rep, err
		}
	}
	c0, w0 := cpuTime(), time.Now()
	time.Sleep(time.Duration(req.Rounds) * req.Liveness) // the idle rounds being measured
	if req.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if c0 >= 0 {
		rep.CPU = (cpuTime() - c0).Seconds() / time.Since(w0).Seconds()
	} else {
		rep.CPU = -1
	}
	rep.Connected = connected()
	rep.Heap, rep.RSS = heapInUse(), rss()
	if req.CPUProfile != "" { // and the live heap beside it
		f, err := os.Create(req.CPUProfile + ".heap")
		if err != nil {
			return rep, err
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// childStartup: the time node.Start takes on an existing data directory,
// and the heap and RSS it leaves.
func childStartup(req childRequest) (childReport, error) {
	ctx := context.Background()
	rep := childReport{Heap0: heapInUse(), RSS0: rss()}
	t0 := time.Now()
	n, err := node.Start(ctx, node.Options{Dir: req.Dir, Logger: quietLog(),
		Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1}}, node.Handler{})
	if err != nil {
		return rep, err
	}
	rep.StartSeconds = time.Since(t0).Seconds()
	rep.Heap, rep.RSS = heapInUse(), rss()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return rep, n.Stop(sctx)
}

// runChild starts a child measurement and returns its report.
func runChild(ctx context.Context, e *env, kind string, req childRequest, timeout time.Duration) (childReport, error) {
	var rep childReport
	if e.o.ChildExe == "" {
		return rep, skip("needs a child process: run `ocapnet bench`")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.o.ChildExe, e.o.ChildArgs...)
	cmd.Env = append(os.Environ(), ChildEnv+"="+kind)
	b, _ := json.Marshal(req)
	cmd.Stdin = bytes.NewReader(append(b, '\n'))
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stderr = stderr
	outb, err := cmd.Output()
	if jerr := json.Unmarshal(outb, &rep); jerr != nil {
		if err == nil {
			err = jerr
		}
		return rep, fmt.Errorf("child %s: %w: %s", kind, err, stderr.String())
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("child %s: %s", kind, rep.Error)
	}
	if err != nil {
		return rep, fmt.Errorf("child %s: %w: %s", kind, err, stderr.String())
	}
	return rep, nil
}
