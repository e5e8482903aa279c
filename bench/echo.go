package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// echoPair is two peers and an echo: request(k) makes A send request k to
// B, B's side sends it back, and the pair calls the echo function set by
// setEcho when the echo reaches A. Requests carry params [k].
type echoPair interface {
	setEcho(func(k int))
	request(k int) error
	close()
}

// echoDriver runs the echo workloads on one pair, matching echoes to
// requests by k (unique over the pair's life).
type echoDriver struct {
	p     echoPair
	mu    sync.Mutex
	wait  map[int]chan struct{}
	nextK atomic.Int64
}

func newEchoDriver(p echoPair) *echoDriver {
	d := &echoDriver{p: p, wait: map[int]chan struct{}{}}
	p.setEcho(d.echoed)
	return d
}

func (d *echoDriver) echoed(k int) {
	d.mu.Lock()
	ch := d.wait[k]
	delete(d.wait, k)
	d.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// roundTrip sends one request and waits for its echo.
func (d *echoDriver) roundTrip(timeout time.Duration) error {
	k := int(d.nextK.Add(1))
	ch := make(chan struct{})
	d.mu.Lock()
	d.wait[k] = ch
	d.mu.Unlock()
	if err := d.p.request(k); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-time.After(timeout):
		d.mu.Lock()
		delete(d.wait, k)
		d.mu.Unlock()
		return fmt.Errorf("%w: no echo of request %d within %v", ErrTimeout, k, timeout)
	}
}

// inflight keeps w round trips outstanding for d (each worker sends its
// next request when its echo is back), then lets the last ones finish;
// round trips per second.
func (d *echoDriver) inflight(w int, dur time.Duration) (float64, error) {
	var done atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(t0) < dur {
				if err := d.roundTrip(60 * time.Second); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(done.Load()) / time.Since(t0).Seconds(), nil
}

// sequential makes up to n round trips one at a time, for at most dur
// (at least one).
func (d *echoDriver) sequential(n int, dur time.Duration) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	t0 := time.Now()
	for len(out) < n && (len(out) == 0 || time.Since(t0) < dur) {
		s := time.Now()
		if err := d.roundTrip(60 * time.Second); err != nil {
			return nil, err
		}
		out = append(out, time.Since(s))
	}
	return out, nil
}

func echoParams(k int) []byte { return []byte("[" + strconv.Itoa(k) + "]") }

// parseEcho reads k from params [k].
func parseEcho(params []byte) (int, bool) {
	if len(params) < 3 || params[0] != '[' || params[len(params)-1] != ']' {
		return 0, false
	}
	k, err := strconv.Atoi(string(params[1 : len(params)-1]))
	return k, err == nil
}

// echoSystem is one of the pairs compared in the echo case.
type echoSystem struct {
	name string
	d    *echoDriver
	seq  [][]time.Duration
	tput []float64
}

// echoCase: the same echo workloads (sequential round trips, 200 in flight)
// on the ocapnet daemon pair over stdio and over HTTP, two node.Nodes
// through the Go API, and (with --js) a js-libp2p pair that persists
// nothing, in alternating runs, over loopback TCP or via the bench's relay.
func echoCase(ctx context.Context, e *env, path string) error {
	prefix := "echo/" + path
	var systems []*echoSystem
	defer func() {
		for _, s := range systems {
			s.d.p.close()
		}
	}()
	start := func(name string, mk func() (echoPair, error)) {
		p, err := mk()
		if err != nil {
			var sk *skipError
			if errors.As(err, &sk) {
				e.add(skipped(prefix+"/"+name, sk.why))
			} else {
				e.add(failed(prefix+"/"+name, err))
			}
			return
		}
		d := newEchoDriver(p)
		if err := d.roundTrip(60 * time.Second); err != nil { // connect
			p.close()
			e.add(failed(prefix+"/"+name, fmt.Errorf("first round trip: %w", err)))
			return
		}
		systems = append(systems, &echoSystem{name: name, d: d})
	}
	start("go-nodes", func() (echoPair, error) { return newGoNodesPair(ctx, e, path) })
	start("daemon-stdio", func() (echoPair, error) { return newDaemonStdioPair(e, path) })
	start("daemon-http", func() (echoPair, error) { return newDaemonHTTPPair(e, path) })
	var js *echoSystem
	if e.o.JS {
		start("js-pair", func() (echoPair, error) { return newJSPair(e, path) })
		if len(systems) > 0 && systems[len(systems)-1].name == "js-pair" {
			js = systems[len(systems)-1]
		}
	} else {
		e.add(skipped(prefix+"/js-pair", "run with --js (needs Node.js 22 and `npm ci --prefix interop/node`)"))
	}
	if len(systems) == 0 {
		return nil
	}
	seqN, seqDur := e.quick(20, 300), e.quickDur(200*time.Millisecond, 3*time.Second)
	flightDur := e.quickDur(200*time.Millisecond, 2*time.Second)
	var floors []float64
	failedSys := map[string]bool{}
	for i := range e.runs {
		for _, s := range systems {
			if failedSys[s.name] {
				continue
			}
			l, err := s.d.sequential(seqN, seqDur)
			if err == nil {
				s.seq = append(s.seq, l)
				var v float64
				v, err = s.d.inflight(200, flightDur)
				s.tput = append(s.tput, v)
			}
			if err != nil {
				failedSys[s.name] = true
				e.add(failed(prefix+"/"+s.name, err))
			}
		}
		f, err := floorRun(e, i, e.quick(50, 300))
		if err != nil {
			return err
		}
		floors = append(floors, ms(2*f.sync+f.rtt))
	}
	for _, s := range systems {
		if failedSys[s.name] {
			continue
		}
		name := prefix + "/" + s.name
		seqNote := "round trips one at a time: A sends, B's side sends it back (an echo), A receives it"
		flightNote := "round trips per second with 200 outstanding (each is two messages, A→B and B→A); counts echoes received at A"
		switch s.name {
		case "daemon-stdio":
			seqNote += "; two `ocapnet peer --stdio` processes, the echo made by the bench driving B's stdin"
		case "daemon-http":
			seqNote += "; two `ocapnet peer --api` processes, POST /v1/send and the SSE event stream, the echo made by the bench"
		case "go-nodes":
			seqNote += "; two node.Nodes in this process, B's handler queues the echo, one goroutine sends queued echoes with SendBatch"
		case "js-pair":
			seqNote += "; two Node.js processes running interop/node/benchpeer.mjs (js-libp2p, same protocol and framing, nothing persisted), driven over stdio like the daemon"
		}
		if js != nil && s != js {
			rows := latencyRows(name+"/sequential-rtt", s.seq, js.seq, seqNote+"; baseline: the js-libp2p pair")
			for _, r := range rows {
				if s.name != "go-nodes" {
					r.Goal = "not above the js-libp2p pair"
				}
				e.add(r)
			}
			r := compared(name+"/inflight-200", "round trips/s", "higher", s.tput, js.tput, flightNote+"; baseline: the js-libp2p pair")
			if s.name != "go-nodes" {
				r.Goal = "≥ 10× the js-libp2p pair and ≥ 20,000"
			}
			e.add(r)
		} else {
			for _, r := range latencyRows(name+"/sequential-rtt", s.seq, nil, seqNote) {
				e.add(r)
			}
			e.add(figure(name+"/inflight-200", "round trips/s", "higher", s.tput, flightNote))
		}
		if s.name == "daemon-stdio" || s.name == "daemon-http" {
			var p50 []float64
			for _, l := range s.seq {
				p50 = append(p50, ms(pct(l, 0.5)))
			}
			e.add(compared(name+"/sequential-rtt-p50-vs-floor", "ms", "lower", p50, floors,
				"baseline: two "+syncName+"s + one plain TCP loopback round trip (p50s), measured alternately").
				withGoal("≤ 1.5× the baseline").withSamples(len(s.seq[0])))
		}
	}
	return nil
}
