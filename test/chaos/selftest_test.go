//go:build chaos

package chaos

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Mutations of an event log: each injects one kind of fault the checker
// must see. They return the mutated copy and how many faults they injected.

// dropEveryNth removes every delivery of every nth distinct confirmed
// message (its first delivery and any redelivery): exactly that many
// messages are lost.
func dropEveryNth(evs []event, nth int) ([]event, int) {
	confirmed := map[string]bool{}
	for _, e := range evs {
		if e.m["event"] == "sent" {
			confirmed[fmt.Sprint(e.m["id"])] = true
		}
	}
	idOf := names(evs)
	seen, drop := map[string]bool{}, map[string]bool{}
	for _, e := range evs {
		if key, ok := msgKey(e, idOf); ok && !seen[key] && confirmed[key] {
			seen[key] = true
			if len(seen)%nth == 0 {
				drop[key] = true
			}
		}
	}
	var out []event
	for _, e := range evs {
		if key, ok := msgKey(e, idOf); ok && drop[key] {
			continue
		}
		out = append(out, e)
	}
	return out, len(drop)
}

// duplicateOne repeats one delivery in the middle of the log, unmarked.
func duplicateOne(evs []event) ([]event, int) {
	var idx []int
	for i, e := range evs {
		if e.m["event"] == "message" {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return evs, 0
	}
	i := idx[len(idx)/2]
	dup := evs[i]
	dup.m = maps.Clone(dup.m)
	dup.m["redelivery"] = false
	out := append(append(append([]event{}, evs[:i+1]...), dup), evs[i+1:]...)
	return out, 1
}

// swapOne swaps two successive first deliveries of one pair in the middle
// of the log.
func swapOne(evs []event) ([]event, int) {
	idOf := names(evs)
	last := map[string]int{} // pair → index of its previous delivery
	var cands [][2]int
	for i, e := range evs {
		if e.m["event"] != "message" || e.m["redelivery"] == true {
			continue
		}
		pr := fmt.Sprint(e.m["from"], ">", e.proc)
		if j, ok := last[pr]; ok {
			cands = append(cands, [2]int{j, i})
		}
		last[pr] = i
	}
	_ = idOf
	if len(cands) == 0 {
		return evs, 0
	}
	c := cands[len(cands)/2]
	out := append([]event{}, evs...)
	out[c[0]], out[c[1]] = out[c[1]], out[c[0]]
	return out, 1
}

func names(evs []event) map[string]string {
	idOf := map[string]string{}
	for _, e := range evs {
		if e.m["event"] == "ready" {
			idOf[fmt.Sprint(e.m["peerId"])] = e.proc
		}
	}
	return idOf
}

// msgKey is a delivery's message as the send id "from>to>k".
func msgKey(e event, idOf map[string]string) (string, bool) {
	if e.m["event"] != "message" {
		return "", false
	}
	params, _ := e.m["params"].(map[string]any)
	k, _ := params["k"].(float64)
	return fmt.Sprintf("%s>%s>%d", idOf[fmt.Sprint(e.m["from"])], e.proc, int(k)), true
}

// checkMutations applies each mutation to a passing log and reports what
// the checker missed.
func checkMutations(evs []event, faults []fault, relayed map[pair]bool) []string {
	base := check(evs, faults, relayed)
	var missed []string
	if m, n := dropEveryNth(evs, 1000); n == 0 {
		missed = append(missed, "drop every 1000th: too few messages to drop one")
	} else if r := check(m, faults, relayed); r.lost != base.lost+n || !r.failed() {
		missed = append(missed, fmt.Sprintf("drop every 1000th: %d dropped, checker saw %d lost", n, r.lost-base.lost))
	}
	if m, n := duplicateOne(evs); n == 0 {
		missed = append(missed, "duplicate: no delivery")
	} else if r := check(m, faults, relayed); r.dups != base.dups+1 || !r.failed() {
		missed = append(missed, fmt.Sprintf("duplicate: checker saw %d unmarked duplicates", r.dups-base.dups))
	}
	if m, n := swapOne(evs); n == 0 {
		missed = append(missed, "reorder: no two deliveries of one pair")
	} else if r := check(m, faults, relayed); r.reordered <= base.reordered || !r.failed() {
		missed = append(missed, fmt.Sprintf("reorder: checker saw %d reorderings", r.reordered-base.reordered))
	}
	return missed
}

// mutationSelfTest shows, on this run's own events, that the checker
// would have failed the run on a loss, a duplicate or a reordering.
func mutationSelfTest(t *testing.T, res runResult) {
	t.Helper()
	if missed := checkMutations(res.evs, res.faults, res.relayed); len(missed) > 0 {
		t.Errorf("checker self-test on this run's events: %v", missed)
	} else {
		n, _ := dropEveryNth(res.evs, 1000)
		_ = n
		t.Logf("checker self-test on this run's events: a drop of every 1000th message, one unmarked duplicate and one reordering each fail the check")
	}
}

// synthetic is a well-formed log: two peers, n messages each way, a few
// marked redeliveries.
func synthetic(n int) []event {
	at := time.Unix(1e9, 0)
	ev := func(proc string, m map[string]any) event { at = at.Add(time.Millisecond); return event{at, proc, m} }
	evs := []event{ev("peer1", map[string]any{"event": "ready", "peerId": "A"}), ev("peer2", map[string]any{"event": "ready", "peerId": "B"})}
	for k := 1; k <= n; k++ {
		for _, d := range [][3]string{{"peer1", "peer2", "A"}, {"peer2", "peer1", "B"}} {
			evs = append(evs, ev(d[0], map[string]any{"event": "sent", "id": fmt.Sprintf("%s>%s>%d", d[0], d[1], k)}))
			msg := map[string]any{"event": "message", "from": d[2], "params": map[string]any{"k": float64(k)}, "redelivery": false}
			evs = append(evs, ev(d[1], msg))
			if k%500 == 0 {
				re := maps.Clone(msg)
				re["redelivery"] = true
				evs = append(evs, ev(d[1], re))
			}
		}
	}
	return evs
}

// TestCheckerSelfTest: the checker passes a well-formed log and fails
// each mutation of it (a loss, a duplicate, a reordering). Cheap; runs
// with the suite in CI.
func TestCheckerSelfTest(t *testing.T) {
	evs := synthetic(3000)
	if r := check(evs, nil, nil); r.failed() || r.confirmed != 6000 || r.redeliveries != 12 {
		t.Fatalf("well-formed log: %s", r.String())
	}
	if missed := checkMutations(evs, nil, nil); len(missed) > 0 {
		t.Fatal(missed)
	}
	m, n := dropEveryNth(evs, 1000)
	if r := check(m, nil, nil); n != 6 || r.lost != 6 {
		t.Fatalf("drop every 1000th: %d dropped, %d lost, want 6 and 6", n, r.lost)
	}
	// A relayed pair delivering over a direct connection is a failure too.
	leak := append(append([]event{}, evs[:2]...), event{evs[2].at, "peer2", map[string]any{"event": "peer", "peer": "A", "state": "connected", "remoteAddr": "/ip4/10.0.0.1/tcp/4001"}})
	leak = append(leak, evs[2:]...)
	if r := check(leak, nil, map[pair]bool{{"peer1", "peer2"}: true}); r.relayedDirect == 0 || !r.failed() {
		t.Fatalf("a relayed pair over a direct link passed: %s", r.String())
	}
	if r := check(leak, nil, nil); r.failed() {
		t.Fatalf("a direct pair over a direct link failed: %s", r.String())
	}
}

// TestChaosDetectsMissingFsync: a short chaos run of power-loss faults
// with peers whose store does not fsync (build tag ocapnet_nosync, in a
// test binary of cmd/ocapnet that runs as the command) must fail; the same
// faults with fsync on are part of TestChaos, which must pass.
func TestChaosDetectsMissingFsync(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "ocapnet-nosync.test")
	if out, err := exec.Command("go", "test", "-c", "-tags", "ocapnet_nosync", "-o", bin, "../../cmd/ocapnet").CombinedOutput(); err != nil {
		t.Fatalf("building the no-fsync ocapnet: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	spec := profileSpec{peers: 3, duration: 15 * time.Second, rate: 150, faultGap: 1500 * time.Millisecond, drain: 20 * time.Second, extra: 0}
	res := runChaos(t, runConfig{spec: spec, seed: seed, bin: bin, dir: dir, kinds: []string{"power-loss"},
		env: []string{"OCAPNET_TEST_AS_COMMAND=1"}})
	rep := res.rep
	t.Logf("no-fsync run (seed %d): %s", seed, rep.String())
	if rep.faults["power-loss"] == 0 {
		t.Fatal("no power cut in the no-fsync run")
	}
	if !rep.failed() {
		t.Fatalf("the no-fsync run passed: the chaos suite cannot see a missing fsync")
	}
	t.Logf("without fsync, %d power cuts caused %d lost, %d unmarked duplicates, %d reordered, %d gaps, %d peers seen restarted",
		rep.faults["power-loss"], rep.lost, rep.dups, rep.reordered, rep.gaps, rep.restarts)
}
