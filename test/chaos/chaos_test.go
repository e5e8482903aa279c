//go:build chaos

package chaos

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/internal/lazyfs"
)

var (
	profile = flag.String("chaos.profile", "short", "short (CI: ≥10,000 messages, ≥30 faults, < 5 min) or long (about 80 min, 10⁶ messages, 10³ faults)")
	seedArg = flag.Uint64("chaos.seed", 0, "fault schedule seed (0: from the clock; printed, so a run can be replayed)")
	peersN  = flag.Int("chaos.peers", 0, "number of peer processes (0: the profile's)")
	durArg  = flag.Duration("chaos.duration", 0, "override the profile's load-and-fault duration")
	rateArg = flag.Int("chaos.rate", 0, "override the profile's message rate (all pairs together, per second)")
	gapArg  = flag.Duration("chaos.fault-gap", 0, "override the profile's mean time between fault starts")
)

type profileSpec struct {
	peers       int
	duration    time.Duration // load and faults
	rate        int           // messages per second, all pairs together
	faultGap    time.Duration // mean time between fault starts
	drain       time.Duration // how long to wait for delivery after healing
	minMessages int           // the phase goes on (up to extra) until this many sends were confirmed
	minFaults   int           // and this many faults ended
	extra       time.Duration // most the phase may run past duration to reach the minima
	flood       int           // identities per flood fault
}

var profiles = map[string]profileSpec{
	"short": {peers: 3, duration: 90 * time.Second, rate: 250, faultGap: 1200 * time.Millisecond, drain: 120 * time.Second,
		minMessages: 10000, minFaults: 30, extra: 60 * time.Second, flood: 1500},
	"long": {peers: 5, duration: 80 * time.Minute, rate: 280, faultGap: 3500 * time.Millisecond, drain: 5 * time.Minute,
		minMessages: 1000000, minFaults: 1000, extra: 10 * time.Minute, flood: 3000},
}

// TestChaos is the chaos run (docs/RELIABILITY.md). It ends with the
// summary line and, after the verdict, shows that the checker would have
// seen a loss, a duplicate and a reordering in this very run's events.
func TestChaos(t *testing.T) {
	spec, ok := profiles[*profile]
	if !ok {
		t.Fatalf("unknown -chaos.profile %q", *profile)
	}
	if *durArg > 0 {
		spec.duration, spec.extra = *durArg, 0 // exactly this long; the minima are not required
	}
	if *rateArg > 0 {
		spec.rate = *rateArg
	}
	if *gapArg > 0 {
		spec.faultGap = *gapArg
	}
	if *peersN > 0 {
		spec.peers = *peersN
	}
	requireTools(t)
	seed := *seedArg
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos profile %s, seed %d (replay with -chaos.seed=%d)", *profile, seed, seed)
	dir := t.TempDir()
	bin := filepath.Join(dir, "ocapnet")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ocapnet").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	res := runChaos(t, runConfig{spec: spec, seed: seed, bin: bin, dir: dir, kinds: allKinds})
	rep := res.rep
	t.Log(rep.String())
	failed := rep.failed()
	if failed {
		keep := filepath.Join(os.TempDir(), fmt.Sprintf("ocapnet-chaos-%d", seed))
		exec.Command("cp", "-r", "--no-dereference", dir, keep).Run()
		t.Errorf("chaos run failed (seed %d): %s; logs kept in %s", seed, rep.String(), keep)
	}
	if *durArg == 0 && (rep.confirmed < spec.minMessages || rep.totalFaults() < spec.minFaults) {
		t.Errorf("profile %s too small: %d messages, %d faults (want ≥%d and ≥%d)", *profile, rep.confirmed, rep.totalFaults(), spec.minMessages, spec.minFaults)
	}
	for _, k := range []string{"power-loss", "kill-relay", "flood"} {
		if slices.Contains(allKinds, k) && rep.faults[k] == 0 {
			t.Errorf("no %s fault in this run", k)
		}
	}
	if rep.relayKillsHit == 0 && rep.faults["kill-relay"] > 0 {
		t.Errorf("no relay kill hit relayed traffic (%d relay kills)", rep.faults["kill-relay"])
	}
	// The rest of the relayed pairs' deliveries came while the receiver's
	// latest peer event did not name a connected link (route unknown);
	// none may have come over a direct one (rep.failed).
	if rep.relayedCircuit == 0 || rep.relayedCircuit*4 < rep.relayedPlanned*3 {
		t.Errorf("relayed pairs: only %d of %d first deliveries seen over a circuit", rep.relayedCircuit, rep.relayedPlanned)
	}
	if !failed {
		mutationSelfTest(t, res)
	}
	t.Logf("event log and process logs: %s", dir)
	t.Log(rep.Summary())
	setSummary(rep.Summary()) // printed last, after the verdicts (TestMain)
}

func requireTools(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the chaos suite needs root for network namespaces, nftables and FUSE")
	}
	for _, tool := range []string{"ip", "nft", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the chaos suite needs %s (apt-get install iproute2 nftables): %v", tool, err)
		}
	}
	if err := lazyfs.Available(); err != nil { // fail, never skip
		t.Fatalf("the chaos suite needs FUSE for its power-loss fault: %v", err)
	}
}

type runConfig struct {
	spec  profileSpec
	seed  uint64
	bin   string   // the ocapnet binary the peers run
	env   []string // extra environment of the peers
	dir   string
	kinds []string // the fault kinds dealt
}

type runResult struct {
	rep     report
	evs     []event
	faults  []fault
	relayed map[pair]bool
}

// runChaos starts a relay and spec.peers peers in their namespaces, runs
// load and faults, heals, drains and returns the checker's verdict. It
// fails t only for trouble of the harness itself; the caller judges the
// report. Everything it creates is removed when t ends.
func runChaos(t *testing.T, cfg runConfig) runResult {
	spec, seed, dir := cfg.spec, cfg.seed, cfg.dir
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	logf, err := os.Create(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	h := &harness{t: t, bin: cfg.bin, dir: dir, logf: logf}
	n := spec.peers
	// Nodes: 0 the relay, 1..n the peers, n+1 the hostile flooder, n+2 the
	// delaying proxy.
	nw, err := newNetns(rng, n+3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.cleanup)
	h.net = nw

	relaySeed := identity.Seed{0xc4, byte(seed)}
	rl := &proc{name: "relay", ns: nw.ns[0], ip: nw.ip[0], seed: relaySeed, h: h, env: cfg.env}
	relayAddr := fmt.Sprintf("/ip4/%s/tcp/9002/p2p/%s", rl.ip, rl.id())
	rl.args = []string{"relay", "--data", filepath.Join(dir, "relay"), "--seed", relaySeed.Hex(), "--listen", fmt.Sprintf("/ip4/%s/tcp/9002", rl.ip), "--insecure-seed", "--log-level", "warn"}
	var peers []*proc
	for i := 1; i <= n; i++ {
		ps := identity.Seed{0xc5, byte(i), byte(seed), byte(seed >> 8)}
		p := &proc{name: fmt.Sprintf("peer%d", i), ns: nw.ns[i], ip: nw.ip[i], seed: ps, h: h, env: cfg.env}
		backing, mnt := filepath.Join(dir, p.name+".durable"), filepath.Join(dir, p.name+".mnt")
		for _, d := range []string{backing, mnt} {
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		p.fs = lazyfs.MountForTest(t, backing, mnt)
		p.args = []string{"peer", "--stdio", "--data", filepath.Join(mnt, "data"), "--seed", ps.Hex(), "--insecure-seed",
			"--listen", fmt.Sprintf("/ip4/%s/tcp/4001", p.ip), "--relay", relayAddr,
			"--liveness", "1s", "--backoff-max", "2s", "--ack-timeout", "1s", "--log-level", "warn", "--test-clock"}
		peers = append(peers, p)
	}
	all := append([]*proc{rl}, peers...)
	// Registered after the mounts, so it runs before they are unmounted,
	// also when the test failed half-way.
	t.Cleanup(func() {
		for _, p := range all {
			p.kill()
		}
	})
	// Pairs of peers at odd index distance... (i+j odd) talk through the
	// relay and can reach each other only through it: their direct traffic
	// is dropped both ways for the whole run.
	relayedPair := func(a, b *proc) bool { return (slices.Index(peers, a)+slices.Index(peers, b))%2 == 1 }
	proxyIdx := n + 2
	proxied := func(a, b *proc) bool { // see the delaying proxy below
		x, y := slices.Index(peers, a), slices.Index(peers, b)
		return n >= 3 && min(x, y) == 0 && max(x, y) == 2
	}
	relayed := map[pair]bool{}
	for i, a := range peers {
		for j, b := range peers {
			if i < j && relayedPair(a, b) {
				relayed[pair{a.name, b.name}], relayed[pair{b.name, a.name}] = true, true
				if err := nw.block(i+1, j+1); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// peer1 and peer3 (a direct pair) reach each other only through the
	// delaying proxy: their direct traffic is dropped, their hints name the
	// proxy, which forwards to the other's listen port.
	var proxy *delayProxy
	if n >= 3 {
		if err := nw.block(1, 3); err != nil {
			t.Fatal(err)
		}
		routes := []delayRoute{
			{Listen: nw.ip[proxyIdx] + ":5001", Target: peers[0].ip + ":4001"},
			{Listen: nw.ip[proxyIdx] + ":5003", Target: peers[2].ip + ":4001"},
		}
		if proxy, err = startDelayProxy(nw.ns[proxyIdx], routes, filepath.Join(dir, "delay-proxy.log")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proxy.stop)
	}
	hint := func(from, to *proc) string {
		if proxied(from, to) {
			return fmt.Sprintf("/ip4/%s/tcp/500%d/p2p/%s", nw.ip[proxyIdx], slices.Index(peers, to)+1, to.id())
		}
		if relayedPair(from, to) {
			return relayAddr + "/p2p-circuit/p2p/" + to.id()
		}
		return fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", to.ip, to.id())
	}
	for i := range peers {
		if c, err := nw.ruleCount(i + 1); err != nil {
			t.Fatal(err)
		} else if want := countRelayedOf(peers[i], peers, func(a, b *proc) bool { return relayedPair(a, b) || proxied(a, b) }); c != want {
			t.Fatalf("%s: %d drop rules in place, want %d", peers[i].name, c, want)
		}
	}
	for _, p := range all {
		p.start()
	}
	waitReady(t, h, len(all))

	env := &faultEnv{t: t, rng: rng, spec: spec, nw: nw, relay: rl, peers: peers, hint: hint, relayedPair: relayedPair,
		relayAddr: relayAddr, floodNS: nw.ns[n+1], dir: dir, proxy: proxy, proxied: proxied, proxyIdx: proxyIdx}
	t.Cleanup(func() {
		env.children.Range(func(k, _ any) bool {
			if c := k.(*exec.Cmd); c.Process != nil {
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			}
			return true
		})
	})

	// Load: numbered messages over every ordered pair, paced to the rate
	// (a late tick is made up for, so a loaded machine does not send
	// fewer messages than planned).
	nextK := map[pair]int{}
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		lrng := rand.New(rand.NewPCG(seed+1, seed+2))
		start, sent := time.Now(), 0
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			due := int(time.Since(start).Seconds()*float64(spec.rate)) - sent
			for range min(due, spec.rate/5) {
				sent++
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
			if due > spec.rate/5 {
				sent += due - spec.rate/5 // more than 200 ms behind: skip, do not burst
			}
		}
	}()

	// Faults on a seeded schedule, dealt from a shuffled deck so that every
	// kind comes up equally often; each fault's end is recorded.
	var faults []fault
	var faultsMu sync.Mutex
	nFaults := func() int { faultsMu.Lock(); defer faultsMu.Unlock(); return len(faults) }
	deadline := time.Now().Add(spec.duration)
	hardEnd := deadline.Add(spec.extra)
	var wg sync.WaitGroup
	var deck []string
	for {
		now := time.Now()
		if now.After(hardEnd) || (now.After(deadline) && int(h.sent.Load()) >= spec.minMessages*21/20 && nFaults() >= spec.minFaults) {
			break
		}
		time.Sleep(env.dur(spec.faultGap/2, spec.faultGap*3/2)) // the fault schedule
		if len(deck) == 0 {
			deck = slices.Clone(cfg.kinds)
			rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		}
		f, run := env.plan(deck[0])
		if !env.claim(f.subjects...) {
			continue // the same kind comes up next time
		}
		deck = deck[1:]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer env.release(f.subjects...)
			f.start = time.Now()
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
	for _, p := range peers {
		p.signal(sigCont) // nothing stays stopped
	}
	// Everything parked by a close is resent; every peer reconnects.
	for _, a := range peers {
		for _, b := range peers {
			if a != b {
				a.send(fmt.Sprintf(`{"op":"reconnect","peer":%q,"hints":[%q]}`, b.id(), hint(a, b)))
				a.send(fmt.Sprintf(`{"op":"resend","peer":%q}`, b.id()))
			}
		}
	}
	t.Logf("load and faults done: %d faults, %d sends confirmed; draining for up to %v", len(faults), h.sent.Load(), spec.drain)

	// Drain: wait until every confirmed send was delivered.
	var rep report
	drainEnd := time.Now().Add(spec.drain)
	lastLost, lastChange := -1, time.Now()
	for {
		rep = check(h.events(), faults, relayed)
		if rep.lost != lastLost {
			lastLost, lastChange = rep.lost, time.Now()
		}
		// Done when nothing is missing, at the drain limit, or when nothing
		// missing arrived for 45 s (after an accepted gap it never will).
		if rep.lost == 0 || time.Now().After(drainEnd) || time.Since(lastChange) > 45*time.Second {
			break
		}
		time.Sleep(time.Second) // polling the event log
	}
	for _, p := range all {
		p.kill()
	}
	evs := h.events()
	return runResult{rep: check(evs, faults, relayed), evs: evs, faults: faults, relayed: relayed}
}

func countRelayedOf(p *proc, peers []*proc, relayed func(a, b *proc) bool) int {
	c := 0
	for _, q := range peers {
		if q != p && relayed(p, q) {
			c++
		}
	}
	return c
}

func waitReady(t testing.TB, h *harness, n int) {
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
