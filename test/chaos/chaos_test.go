//go:build chaos

package chaos

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/identity"
)

var (
	profile = flag.String("chaos.profile", "short", "short (CI: ≥10,000 messages, ≥30 faults, < 5 min) or long (about 80 min)")
	seedArg = flag.Uint64("chaos.seed", 0, "fault schedule seed (0: from the clock; printed, so a run can be replayed)")
	peersN  = flag.Int("chaos.peers", 3, "number of peer processes")
	durArg  = flag.Duration("chaos.duration", 0, "override the profile's load-and-fault duration")
)

type profileSpec struct {
	duration time.Duration // load and faults
	rate     int           // messages per second, all pairs together
	faultGap time.Duration // mean time between fault starts
	drain    time.Duration // how long to wait for delivery after healing
}

var profiles = map[string]profileSpec{
	"short": {duration: 90 * time.Second, rate: 250, faultGap: 1200 * time.Millisecond, drain: 120 * time.Second},
	"long":  {duration: 80 * time.Minute, rate: 210, faultGap: 4800 * time.Millisecond, drain: 5 * time.Minute},
}

// proc is one ocapnet process (relay or peer) in its namespace; it can be
// killed and started again from the same data directory.
type proc struct {
	name, ns, ip string
	args         []string
	seed         identity.Seed
	h            *harness

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
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.ns, p.h.bin}, p.args...)...)
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

func (p *proc) kill() {
	p.mu.Lock()
	cmd, done, in := p.cmd, p.done, p.in
	p.alive = false
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	// ip netns exec execs the binary, so the pid is ocapnet's own.
	<-done
	close(in)
}

func (p *proc) signal(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.cmd.Process.Signal(s)
	}
}

// event is one line a process printed, with when the harness read it.
type event struct {
	at   time.Time
	proc string
	m    map[string]any
}

type harness struct {
	t    *testing.T
	bin  string
	dir  string
	net  *netns
	mu   sync.Mutex
	evs  []event
	logf *os.File
}

func (h *harness) record(p *proc, line []byte) {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return
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

type fault struct {
	kind     string
	subjects []string    // process names
	pairs    [][2]string // when set, recovery counts deliveries on these pairs only
	start    time.Time
	end      time.Time
}

func TestChaos(t *testing.T) {
	spec, ok := profiles[*profile]
	if !ok {
		t.Fatalf("unknown -chaos.profile %q", *profile)
	}
	if *durArg > 0 {
		spec.duration = *durArg
	}
	if os.Geteuid() != 0 {
		t.Fatal("the chaos suite needs root for network namespaces and nftables")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the chaos suite needs %s (apt-get install iproute2 nftables): %v", tool, err)
		}
	}
	seed := *seedArg
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos profile %s, seed %d (replay with -chaos.seed=%d)", *profile, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	dir := t.TempDir()
	bin := filepath.Join(dir, "ocapnet")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ocapnet").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	h := &harness{t: t, bin: bin, dir: dir, logf: logf}
	n := *peersN
	nw, err := newNetns(rng, n+1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.cleanup)
	h.net = nw

	// The relay is node 0, peers 1..n.
	relaySeed := identity.Seed{0xc4, byte(seed)}
	rl := &proc{name: "relay", ns: nw.ns[0], ip: nw.ip[0], seed: relaySeed, h: h}
	relayAddr := fmt.Sprintf("/ip4/%s/tcp/9002/p2p/%s", rl.ip, rl.id())
	rl.args = []string{"relay", "--data", filepath.Join(dir, "relay"), "--seed", relaySeed.Hex(), "--listen", fmt.Sprintf("/ip4/%s/tcp/9002", rl.ip), "--insecure-seed", "--log-level", "warn"}
	rl.start()
	var peers []*proc
	for i := 1; i <= n; i++ {
		ps := identity.Seed{0xc5, byte(i), byte(seed), byte(seed >> 8)}
		p := &proc{name: fmt.Sprintf("peer%d", i), ns: nw.ns[i], ip: nw.ip[i], seed: ps, h: h}
		p.args = []string{"peer", "--stdio", "--data", filepath.Join(dir, p.name), "--seed", ps.Hex(), "--insecure-seed",
			"--listen", fmt.Sprintf("/ip4/%s/tcp/4001", p.ip), "--relay", relayAddr,
			"--liveness", "1s", "--backoff-max", "2s", "--ack-timeout", "1s", "--log-level", "warn"}
		p.start()
		peers = append(peers, p)
	}
	byName := map[string]*proc{"relay": rl}
	for _, p := range peers {
		byName[p.name] = p
	}
	hint := func(from, to *proc) string {
		if (indexOf(peers, from)+indexOf(peers, to))%2 == 0 {
			return fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", to.ip, to.id())
		}
		return relayAddr + "/p2p-circuit/p2p/" + to.id()
	}
	waitReady(t, h, len(peers)+1)

	// Load: numbered messages over every ordered pair.
	type pair struct{ from, to string }
	nextK := map[pair]int{}
	var faults []fault
	var faultsMu sync.Mutex
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(time.Second / time.Duration(spec.rate))
		defer tick.Stop()
		lrng := rand.New(rand.NewPCG(seed+1, seed+2))
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			a := peers[lrng.IntN(len(peers))]
			b := peers[lrng.IntN(len(peers))]
			if a == b {
				continue
			}
			pr := pair{a.name, b.name}
			nextK[pr]++
			k := nextK[pr]
			a.send(fmt.Sprintf(`{"op":"send","id":"%s>%s>%d","to":%q,"method":"n","params":{"k":%d},"hints":[%q]}`, a.name, b.name, k, b.id(), k, hint(a, b)))
		}
	}()

	// Faults on a seeded schedule; each fault's end is recorded.
	deadline := time.Now().Add(spec.duration)
	var wg sync.WaitGroup
	busy := map[string]bool{}
	var busyMu sync.Mutex
	claim := func(names ...string) bool {
		busyMu.Lock()
		defer busyMu.Unlock()
		for _, n := range names {
			if busy[n] {
				return false
			}
		}
		for _, n := range names {
			busy[n] = true
		}
		return true
	}
	release := func(names ...string) {
		busyMu.Lock()
		defer busyMu.Unlock()
		for _, n := range names {
			delete(busy, n)
		}
	}
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	for time.Now().Before(deadline) {
		time.Sleep(dur(spec.faultGap/2, spec.faultGap*3/2)) // the fault schedule
		a := peers[rng.IntN(len(peers))]
		b := peers[rng.IntN(len(peers))]
		for b == a {
			b = peers[rng.IntN(len(peers))]
		}
		kind := []string{"kill-peer", "kill-relay", "pause-peer", "partition", "loss", "wake", "close-reconnect"}[rng.IntN(7)]
		hold := dur(time.Second, 4*time.Second)
		var subjects []string
		var pairs [][2]string
		var run func()
		switch kind {
		case "kill-peer":
			subjects = []string{a.name}
			run = func() { a.kill(); time.Sleep(hold); a.start() }
		case "kill-relay":
			subjects = []string{"relay"}
			for _, x := range peers {
				for _, y := range peers {
					if x != y && strings.Contains(hint(x, y), "p2p-circuit") {
						pairs = append(pairs, [2]string{x.name, y.name})
					}
				}
			}
			run = func() { rl.kill(); time.Sleep(hold); rl.start() }
		case "pause-peer":
			subjects = []string{a.name}
			hold = dur(4*time.Second, 6*time.Second) // longer than the 3 s liveness detection
			run = func() { a.signal(syscall.SIGSTOP); time.Sleep(hold); a.signal(syscall.SIGCONT) }
		case "partition", "loss":
			subjects = []string{a.name, b.name}
			pairs = [][2]string{{a.name, b.name}, {b.name, a.name}}
			pct := 100
			if kind == "loss" {
				pct = 30
			}
			run = func() {
				if err := nw.drop(indexOf(peers, a)+1, indexOf(peers, b)+1, pct); err != nil {
					t.Errorf("%s: %v", kind, err)
				}
				time.Sleep(hold)
				if err := nw.heal(indexOf(peers, a)+1, indexOf(peers, b)+1); err != nil {
					t.Errorf("heal: %v", err)
				}
			}
		case "wake":
			subjects = []string{a.name}
			hold = 0
			run = func() { a.send(`{"op":"wake"}`) }
		case "close-reconnect":
			subjects = []string{a.name, b.name}
			pairs = [][2]string{{a.name, b.name}, {b.name, a.name}}
			run = func() {
				a.send(fmt.Sprintf(`{"op":"close","peer":%q}`, b.id()))
				time.Sleep(hold)
				a.send(fmt.Sprintf(`{"op":"reconnect","peer":%q,"hints":[%q]}`, b.id(), hint(a, b)))
				a.send(fmt.Sprintf(`{"op":"resend","peer":%q}`, b.id()))
				b.send(fmt.Sprintf(`{"op":"reconnect","peer":%q,"hints":[%q]}`, a.id(), hint(b, a)))
				b.send(fmt.Sprintf(`{"op":"resend","peer":%q}`, a.id()))
			}
		}
		if !claim(subjects...) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer release(subjects...)
			f := fault{kind: kind, subjects: subjects, pairs: pairs, start: time.Now()}
			run()
			f.end = time.Now()
			faultsMu.Lock()
			faults = append(faults, f)
			faultsMu.Unlock()
		}()
	}
	close(stopLoad)
	<-loadDone
	wg.Wait()
	nw.healAll()
	// Everything parked by a close is resent; every peer reconnects.
	for _, a := range peers {
		for _, b := range peers {
			if a != b {
				a.send(fmt.Sprintf(`{"op":"reconnect","peer":%q,"hints":[%q]}`, b.id(), hint(a, b)))
				a.send(fmt.Sprintf(`{"op":"resend","peer":%q}`, b.id()))
			}
		}
	}
	t.Logf("load and faults done: %d faults; draining for up to %v", len(faults), spec.drain)

	// Drain: wait until every confirmed send was delivered.
	var rep report
	drainEnd := time.Now().Add(spec.drain)
	for {
		rep = check(h.events(), faults)
		if rep.lost == 0 || time.Now().After(drainEnd) {
			break
		}
		time.Sleep(500 * time.Millisecond) // polling the event log
	}
	for _, p := range peers {
		p.kill()
	}
	rl.kill()
	rep = check(h.events(), faults)
	t.Log(rep.String())
	t.Logf("event log and process logs: %s", dir)
	if rep.lost > 0 || rep.dups > 0 || rep.reordered > 0 || rep.gaps > 0 {
		keep := filepath.Join(os.TempDir(), fmt.Sprintf("ocapnet-chaos-%d", seed))
		exec.Command("cp", "-r", dir, keep).Run()
		t.Fatalf("chaos run failed (seed %d): %s; logs kept in %s", seed, rep.String(), keep)
	}
	if *profile == "short" && (rep.confirmed < 10000 || len(faults) < 30) {
		t.Fatalf("short profile too small: %d messages, %d faults (want ≥10,000 and ≥30)", rep.confirmed, len(faults))
	}
}

func indexOf(ps []*proc, p *proc) int { return slices.Index(ps, p) }

func waitReady(t *testing.T, h *harness, n int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := 0
		for _, e := range h.events() {
			if e.m["event"] == "ready" {
				ready++
			}
		}
		if ready >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d processes ready; see %s", ready, n, h.dir)
		}
		time.Sleep(50 * time.Millisecond) // polling the event log
	}
}

// report is the checker's verdict.
type report struct {
	confirmed, delivered, unconfirmedDelivered int
	lost, dups, reordered, redeliveries, gaps  int
	faults                                     map[string]int
	recovery                                   []time.Duration
	examples                                   []string
}

func (r report) String() string {
	sort.Slice(r.recovery, func(i, j int) bool { return r.recovery[i] < r.recovery[j] })
	pct := func(q float64) time.Duration {
		if len(r.recovery) == 0 {
			return 0
		}
		return r.recovery[min(len(r.recovery)-1, int(q*float64(len(r.recovery))))]
	}
	var fk []string
	total := 0
	for k, v := range r.faults {
		fk = append(fk, fmt.Sprintf("%s=%d", k, v))
		total += v
	}
	sort.Strings(fk)
	return fmt.Sprintf("messages confirmed by Send: %d, delivered: %d (plus %d sent just before a kill, never confirmed, delivered); "+
		"lost: %d, unmarked duplicates: %d, out of order: %d, gaps: %d, marked redeliveries: %d; faults: %d (%s); "+
		"time from a fault's end to the next delivery on what it hit (the pair, the peer, or the relayed pairs): p50 %v, p90 %v, max %v%s",
		r.confirmed, r.delivered, r.unconfirmedDelivered, r.lost, r.dups, r.reordered, r.gaps, r.redeliveries, total,
		strings.Join(fk, " "), pct(0.5).Round(time.Millisecond), pct(0.9).Round(time.Millisecond), pct(0.999).Round(time.Millisecond),
		func() string {
			if len(r.examples) == 0 {
				return ""
			}
			return "; e.g. " + strings.Join(r.examples, "; ")
		}())
}

// check reads the event log: sends confirmed by "sent", deliveries by
// "message", per ordered pair.
func check(evs []event, faults []fault) report {
	r := report{faults: map[string]int{}}
	type pair struct{ from, to string }
	confirmed := map[pair]map[int]bool{}
	delivered := map[pair]map[int]bool{}
	maxK := map[pair]int{}
	idOf := map[string]string{} // peer ID → process name
	for _, e := range evs {
		if e.m["event"] == "ready" {
			idOf[fmt.Sprint(e.m["peerId"])] = e.proc
		}
	}
	ex := func(s string) {
		if len(r.examples) < 5 {
			r.examples = append(r.examples, s)
		}
	}
	var deliveries []event
	for _, e := range evs {
		switch e.m["event"] {
		case "sent":
			parts := strings.Split(fmt.Sprint(e.m["id"]), ">")
			if len(parts) != 3 {
				continue
			}
			var k int
			fmt.Sscan(parts[2], &k)
			pr := pair{parts[0], parts[1]}
			if confirmed[pr] == nil {
				confirmed[pr] = map[int]bool{}
			}
			confirmed[pr][k] = true
		case "gap":
			r.gaps++
			ex(fmt.Sprintf("gap at %s: %v", e.proc, e.m))
		case "message":
			from := idOf[fmt.Sprint(e.m["from"])]
			pr := pair{from, e.proc}
			params, _ := e.m["params"].(map[string]any)
			k := int(params["k"].(float64))
			redelivery := e.m["redelivery"] == true
			if delivered[pr] == nil {
				delivered[pr] = map[int]bool{}
			}
			switch {
			case delivered[pr][k] && redelivery:
				r.redeliveries++
			case delivered[pr][k]:
				r.dups++
				ex(fmt.Sprintf("unmarked duplicate %s→%s k=%d", from, e.proc, k))
			case k < maxK[pr]:
				r.reordered++
				ex(fmt.Sprintf("out of order %s→%s k=%d after %d", from, e.proc, k, maxK[pr]))
			}
			if redelivery && !delivered[pr][k] {
				r.redeliveries++
			}
			delivered[pr][k] = true
			maxK[pr] = max(maxK[pr], k)
			deliveries = append(deliveries, e)
		}
	}
	for pr, ks := range confirmed {
		for k := range ks {
			r.confirmed++
			if !delivered[pr][k] {
				r.lost++
				ex(fmt.Sprintf("lost %s→%s k=%d", pr.from, pr.to, k))
			}
		}
	}
	for pr, ks := range delivered {
		for k := range ks {
			if confirmed[pr][k] {
				r.delivered++
			} else {
				r.unconfirmedDelivered++
			}
		}
	}
	for _, f := range faults {
		r.faults[f.kind]++
		for _, d := range deliveries {
			if !d.at.After(f.end) {
				continue
			}
			from := idOf[fmt.Sprint(d.m["from"])]
			involved := slices.Contains(f.subjects, d.proc) || slices.Contains(f.subjects, from)
			if f.pairs != nil {
				involved = slices.Contains(f.pairs, [2]string{from, d.proc})
			}
			if involved {
				r.recovery = append(r.recovery, d.at.Sub(f.end))
				break
			}
		}
	}
	return r
}
