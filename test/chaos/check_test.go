//go:build chaos

package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

type fault struct {
	kind     string
	claims   []string    // what it holds (no two faults hold the same at once)
	subjects []string    // process names (none: recovery counts any delivery)
	pairs    [][2]string // when set, recovery counts deliveries on these pairs only
	start    time.Time
	end      time.Time
}

// report is the checker's verdict.
type report struct {
	confirmed, delivered, unconfirmedDelivered int
	lost, dups, reordered, redeliveries, gaps  int
	restarts                                   int // "restarted" events: a peer saw another lose its state
	relayedPlanned, relayedCircuit             int // first deliveries on relayed pairs; of them over a circuit
	relayedDirect                              int // first deliveries on relayed pairs over a direct connection (a leak)
	directCircuit                              int // first deliveries on direct pairs that went over a circuit
	relayKillsHit                              int // relay kills with relayed deliveries in the 2 s before
	faults                                     map[string]int
	recovery                                   []time.Duration
	examples                                   []string
}

// failed reports whether the run broke a guarantee.
func (r report) failed() bool {
	return r.lost > 0 || r.dups > 0 || r.reordered > 0 || r.gaps > 0 || r.restarts > 0 || r.relayedDirect > 0
}

func (r report) pct(q float64) time.Duration {
	rec := slices.Clone(r.recovery)
	slices.Sort(rec)
	if len(rec) == 0 {
		return 0
	}
	return rec[min(len(rec)-1, int(q*float64(len(rec))))]
}

func (r report) totalFaults() int {
	n := 0
	for _, v := range r.faults {
		n += v
	}
	return n
}

// String is the detailed verdict.
func (r report) String() string {
	return fmt.Sprintf("messages confirmed by Send: %d, delivered: %d (plus %d sent just before a kill, never confirmed, delivered); "+
		"lost: %d, unmarked duplicates: %d, out of order: %d, gaps: %d, peers seen restarted: %d, marked redeliveries: %d; "+
		"relayed pairs: %d first deliveries, %d over a circuit, %d direct (must be 0); direct pairs over a circuit: %d; "+
		"relay kills that hit relayed traffic: %d of %d; faults: %d; "+
		"time from a fault's end to the next delivery on what it hit: p50 %v, p90 %v, max %v%s",
		r.confirmed, r.delivered, r.unconfirmedDelivered, r.lost, r.dups, r.reordered, r.gaps, r.restarts, r.redeliveries,
		r.relayedPlanned, r.relayedCircuit, r.relayedDirect, r.directCircuit, r.relayKillsHit, r.faults["kill-relay"], r.totalFaults(),
		r.pct(0.5).Round(time.Millisecond), r.pct(0.9).Round(time.Millisecond), r.pct(1).Round(time.Millisecond),
		func() string {
			if len(r.examples) == 0 {
				return ""
			}
			return "; e.g. " + strings.Join(r.examples, "; ")
		}())
}

// Summary is the one line that ends a run, in a fixed form so that runs
// can be compared:
// chaos: messages N, faults F (kind:count …), lost 0, unmarked-dup 0,
// reordered 0, gaps 0, relayed R of P, recovery p50/p90/max.
func (r report) Summary() string {
	var fk []string
	for k, v := range r.faults {
		fk = append(fk, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(fk)
	return fmt.Sprintf("chaos: messages %d, faults %d (%s), lost %d, unmarked-dup %d, reordered %d, gaps %d, relayed %d of %d, recovery %v/%v/%v",
		r.confirmed, r.totalFaults(), strings.Join(fk, " "), r.lost, r.dups, r.reordered, r.gaps, r.relayedCircuit, r.relayedPlanned,
		r.pct(0.5).Round(time.Millisecond), r.pct(0.9).Round(time.Millisecond), r.pct(1).Round(time.Millisecond))
}

type pair struct{ from, to string }

// check reads the event log: sends confirmed by "sent", deliveries by
// "message", per ordered pair; the route of a delivery is the remote
// address of the receiver's link to the sender, from its latest "peer"
// event (a circuit address contains /p2p-circuit). relayed names the
// ordered pairs meant to go through the relay.
func check(evs []event, faults []fault, relayed map[pair]bool) report {
	r := report{faults: map[string]int{}}
	confirmed := map[pair]map[int]bool{}
	delivered := map[pair]map[int]bool{}
	maxK := map[pair]int{}
	idOf := map[string]string{} // peer ID → process name
	route := map[pair]string{}  // (sender, receiver) → remote address of the receiver's link
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
	type delivery struct {
		at      time.Time
		pr      pair
		circuit bool
	}
	var deliveries []delivery
	for _, e := range evs {
		switch e.m["event"] {
		case "peer":
			pr := pair{idOf[fmt.Sprint(e.m["peer"])], e.proc}
			if e.m["state"] == "connected" {
				route[pr] = fmt.Sprint(e.m["remoteAddr"])
			} else {
				route[pr] = ""
			}
		case "restarted":
			r.restarts++
			ex(fmt.Sprintf("%s saw %s restarted (lost state): %v", e.proc, idOf[fmt.Sprint(e.m["peer"])], e.m))
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
			kf, _ := params["k"].(float64)
			k := int(kf)
			redelivery := e.m["redelivery"] == true
			if delivered[pr] == nil {
				delivered[pr] = map[int]bool{}
			}
			first := !delivered[pr][k]
			switch {
			case !first && redelivery:
				r.redeliveries++
			case !first:
				r.dups++
				ex(fmt.Sprintf("unmarked duplicate %s→%s k=%d", from, e.proc, k))
			case k < maxK[pr]:
				r.reordered++
				ex(fmt.Sprintf("out of order %s→%s k=%d after %d", from, e.proc, k, maxK[pr]))
			}
			if redelivery && first {
				r.redeliveries++
			}
			circuit := strings.Contains(route[pr], "/p2p-circuit")
			if first {
				switch {
				case relayed[pr] && circuit:
					r.relayedPlanned++
					r.relayedCircuit++
				case relayed[pr]:
					r.relayedPlanned++
					if route[pr] != "" {
						r.relayedDirect++
						ex(fmt.Sprintf("relayed pair %s→%s k=%d delivered over %s", from, e.proc, k, route[pr]))
					}
				case circuit:
					r.directCircuit++
				}
			}
			delivered[pr][k] = true
			maxK[pr] = max(maxK[pr], k)
			deliveries = append(deliveries, delivery{e.at, pr, circuit})
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
		if f.kind == "kill-relay" {
			lo := sort.Search(len(deliveries), func(i int) bool { return deliveries[i].at.After(f.start.Add(-2 * time.Second)) })
			for _, d := range deliveries[lo:] {
				if d.circuit && d.at.Before(f.start) && d.at.After(f.start.Add(-2*time.Second)) {
					r.relayKillsHit++
					break
				}
			}
		}
		// deliveries are in the order the harness read them (times almost
		// sorted): start at the first one after the fault's end.
		from := sort.Search(len(deliveries), func(i int) bool { return deliveries[i].at.After(f.end) })
		for _, d := range deliveries[from:] {
			if !d.at.After(f.end) {
				continue
			}
			involved := len(f.subjects) == 0 || slices.Contains(f.subjects, d.pr.to) || slices.Contains(f.subjects, d.pr.from)
			if f.pairs != nil {
				involved = slices.Contains(f.pairs, [2]string{d.pr.from, d.pr.to})
			}
			if involved {
				r.recovery = append(r.recovery, d.at.Sub(f.end))
				break
			}
		}
	}
	return r
}
