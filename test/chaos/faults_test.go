//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

const sigCont = syscall.SIGCONT

// allKinds are the fault kinds of a chaos run (docs/RELIABILITY.md).
var allKinds = []string{
	"kill-peer", "kill-relay", "pause-peer", "partition", "loss", "wake", "close-reconnect", // processes and links
	"power-loss",                        // SIGKILL and a power cut of the peer's filesystem
	"flood",                             // hostile peers: throwaway identities, slow handshakes, malformed frames
	"bandwidth", "delay-spike", "stall", // slow and narrow networks
	"suspend", "clock-jump", // clocks and suspend
}

// faultEnv is what faults act on.
type faultEnv struct {
	t           *testing.T
	rng         *rand.Rand // the schedule's (only the scheduling goroutine uses it)
	spec        profileSpec
	nw          *netns
	relay       *proc
	peers       []*proc
	hint        func(from, to *proc) string
	relayedPair func(a, b *proc) bool
	relayAddr   string
	floodNS     string
	dir         string
	proxy       *delayProxy // on the path of the proxied pair (nil: none)
	proxied     func(a, b *proc) bool
	proxyIdx    int

	children sync.Map // *exec.Cmd of running flood helpers

	busyMu sync.Mutex
	busy   map[string]bool
	clkMu  sync.Mutex
	clock  map[string]time.Duration // each peer's wall-clock offset
}

func (e *faultEnv) claim(names ...string) bool {
	e.busyMu.Lock()
	defer e.busyMu.Unlock()
	if e.busy == nil {
		e.busy = map[string]bool{}
	}
	for _, n := range names {
		if e.busy[n] {
			return false
		}
	}
	for _, n := range names {
		e.busy[n] = true
	}
	return true
}

func (e *faultEnv) release(names ...string) {
	e.busyMu.Lock()
	defer e.busyMu.Unlock()
	for _, n := range names {
		delete(e.busy, n)
	}
}

func (e *faultEnv) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(e.rng.Int64N(int64(hi-lo)))
}

func (e *faultEnv) index(p *proc) int { return slices.Index(e.peers, p) + 1 } // node index in netns

// relayedPairsOf returns the ordered relayed pairs p is part of.
func (e *faultEnv) relayedPairsOf(p *proc) [][2]string {
	var out [][2]string
	for _, q := range e.peers {
		if q != p && e.relayedPair(p, q) {
			out = append(out, [2]string{p.name, q.name}, [2]string{q.name, p.name})
		}
	}
	return out
}

func (e *faultEnv) allRelayedPairs() [][2]string {
	var out [][2]string
	for _, x := range e.peers {
		for _, y := range e.peers {
			if x != y && e.relayedPair(x, y) {
				out = append(out, [2]string{x.name, y.name})
			}
		}
	}
	return out
}

// linkFault applies set on the network path between a and b and heals it
// after hold. For a relayed pair the path is a's link to the relay (their
// direct path is blocked anyway), which hits every relayed pair of a.
func (e *faultEnv) linkFault(f *fault, a, b *proc, hold time.Duration, set func(i, j int) error) func() {
	i, j := e.index(a), e.index(b)
	f.claims = []string{a.name, b.name}
	f.subjects = []string{a.name, b.name}
	f.pairs = [][2]string{{a.name, b.name}, {b.name, a.name}}
	paths := [][2]int{{i, j}}
	switch {
	case e.relayedPair(a, b):
		paths = [][2]int{{i, 0}}
		f.claims = []string{a.name, "relay"}
		f.subjects = []string{a.name}
		f.pairs = e.relayedPairsOf(a)
	case e.proxied(a, b):
		// Their path is through the proxy: both peers' links to it.
		paths = [][2]int{{i, e.proxyIdx}, {j, e.proxyIdx}}
	}
	return func() {
		for _, p := range paths {
			if err := set(p[0], p[1]); err != nil {
				e.t.Errorf("%s: %v", f.kind, err)
			}
		}
		time.Sleep(hold) // the fault lasts this long
		for _, p := range paths {
			if err := e.nw.heal(p[0], p[1]); err != nil {
				e.t.Errorf("heal: %v", err)
			}
		}
	}
}

// plan draws the subjects and timings of a fault of kind and returns it
// with the function that performs it (run on its own goroutine).
func (e *faultEnv) plan(kind string) (fault, func()) {
	a := e.peers[e.rng.IntN(len(e.peers))]
	b := e.peers[e.rng.IntN(len(e.peers))]
	for b == a {
		b = e.peers[e.rng.IntN(len(e.peers))]
	}
	hold := e.dur(time.Second, 4*time.Second)
	f := fault{kind: kind, claims: []string{a.name}, subjects: []string{a.name}}
	var run func()
	switch kind {
	case "kill-peer":
		run = func() { a.kill(); time.Sleep(hold); a.start() }
	case "power-loss":
		run = func() {
			if err := a.powerCut(); err != nil {
				e.t.Errorf("power cut of %s: %v", a.name, err)
			}
			time.Sleep(hold) // the power is off this long
			a.start()
		}
	case "kill-relay":
		f.claims, f.subjects, f.pairs = []string{"relay"}, []string{"relay"}, e.allRelayedPairs()
		run = func() { e.relay.kill(); time.Sleep(hold); e.relay.start() }
	case "pause-peer":
		hold = e.dur(4*time.Second, 6*time.Second) // longer than the 3 s liveness detection
		run = func() { a.signal(syscall.SIGSTOP); time.Sleep(hold); a.signal(sigCont) }
	case "partition":
		run = e.linkFault(&f, a, b, hold, func(i, j int) error { return e.nw.drop(i, j, 100) })
	case "loss":
		run = e.linkFault(&f, a, b, hold, func(i, j int) error { return e.nw.drop(i, j, 30) })
	case "bandwidth":
		// A narrow link: 16–64 KiB/s each way, over the rate dropped.
		bps := 16<<10 + e.rng.IntN(48<<10)
		hold = e.dur(3*time.Second, 8*time.Second)
		run = e.linkFault(&f, a, b, hold, func(i, j int) error { return e.nw.limit(i, j, bps) })
	case "delay-spike":
		// The delaying proxy on the path of peer1 and peer3 adds 200–800
		// ms of latency to every chunk, each way, for 2–5 s.
		if e.proxy == nil {
			hold = 0
			run = func() {}
			break
		}
		a, b = e.peers[0], e.peers[2]
		f.claims, f.subjects = []string{"proxy", a.name, b.name}, []string{a.name, b.name}
		f.pairs = [][2]string{{a.name, b.name}, {b.name, a.name}}
		hold = e.dur(2*time.Second, 5*time.Second)
		lat := e.dur(200*time.Millisecond, 800*time.Millisecond)
		run = func() {
			if err := e.proxy.setDelay(lat); err != nil {
				e.t.Errorf("delay-spike: %v", err)
			}
			time.Sleep(hold) // the spike lasts this long
			if err := e.proxy.setDelay(0); err != nil {
				e.t.Errorf("delay-spike: %v", err)
			}
		}
	case "stall":
		// Every packet of the path held back for 300–900 ms: shorter than
		// the liveness detection (3 s), so the links stay up and TCP
		// retransmits, which the application sees as a stall.
		hold = e.dur(300*time.Millisecond, 900*time.Millisecond)
		run = e.linkFault(&f, a, b, hold, func(i, j int) error { return e.nw.drop(i, j, 100) })
	case "wake":
		hold = 0
		run = func() { a.send(`{"op":"wake"}`) }
	case "close-reconnect":
		f.claims, f.subjects = []string{a.name, b.name}, []string{a.name, b.name}
		f.pairs = [][2]string{{a.name, b.name}, {b.name, a.name}}
		run = func() {
			a.send(fmt.Sprintf(`{"op":"close","peer":%q}`, b.id()))
			time.Sleep(hold)
			a.send(fmt.Sprintf(`{"op":"reconnect","peer":%q,"hints":[%q]}`, b.id(), e.hint(a, b)))
			a.send(fmt.Sprintf(`{"op":"resend","peer":%q}`, b.id()))
			b.send(fmt.Sprintf(`{"op":"reconnect","peer":%q,"hints":[%q]}`, a.id(), e.hint(b, a)))
			b.send(fmt.Sprintf(`{"op":"resend","peer":%q}`, a.id()))
		}
	case "suspend":
		// The whole system stops (every process group), longer than the
		// ack timeout (1 s) and the backoff cap (2 s); on resume the wall
		// clock has jumped ahead of the monotonic one, as after a real
		// suspend.
		f.claims = []string{"relay"}
		for _, p := range e.peers {
			f.claims = append(f.claims, p.name)
		}
		f.subjects = nil
		hold = e.dur(3*time.Second, 5*time.Second)
		jump := e.dur(time.Minute, 3*time.Minute)
		run = func() {
			procs := append([]*proc{e.relay}, e.peers...)
			for _, p := range procs {
				p.signal(syscall.SIGSTOP)
			}
			time.Sleep(hold) // suspended this long
			for _, p := range procs {
				p.signal(sigCont)
			}
			for _, p := range e.peers {
				e.jumpClock(p, jump)
			}
		}
	case "clock-jump":
		// A wall-clock step of 1–10 minutes, forward or backward, on one
		// peer (its transport's clock: wake detector, backoff deadlines,
		// last-active); offsets add up but stay within ±30 minutes.
		jump := e.dur(time.Minute, 10*time.Minute)
		e.clkMu.Lock()
		if cur := e.clock[a.name]; cur > 0 || (cur == 0 && e.rng.IntN(2) == 0) {
			jump = -jump
		}
		e.clkMu.Unlock()
		hold = 0
		run = func() { e.jumpClock(a, jump) }
	case "flood":
		f.claims, f.subjects = []string{"flood"}, nil
		run = func() {
			if err := e.flood(); err != nil {
				e.t.Errorf("flood: %v", err)
			}
		}
	default:
		panic("unknown fault kind " + kind)
	}
	return f, run
}

// jumpClock steps p's wall clock by d (the test-only clock op).
func (e *faultEnv) jumpClock(p *proc, d time.Duration) {
	e.clkMu.Lock()
	if e.clock == nil {
		e.clock = map[string]time.Duration{}
	}
	e.clock[p.name] += d
	e.clkMu.Unlock()
	p.send(fmt.Sprintf(`{"op":"clock","jumpMs":%d}`, d.Milliseconds()))
}
