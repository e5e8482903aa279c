package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/transport"
)

// monitorInterval is how often the monitor looks at the relays and the
// addresses and announces coalesced peer events that are due.
const monitorInterval = 250 * time.Millisecond

// relayRewarn is how often an unchanged relay failure is logged again.
const relayRewarn = 5 * time.Minute

// relaySeen is what the monitor last logged about a relay.
type relaySeen struct {
	reserved bool
	lastErr  string
	warnedAt time.Time
}

// monitor watches what the daemon itself sees of the transport: reservation
// failures (logged at WARN), address changes (an "addrs" event) and
// coalesced peer events that are due.
func (d *Daemon) monitor() {
	defer d.wg.Done()
	tick := time.NewTicker(monitorInterval)
	defer tick.Stop()
	seen := map[peer.ID]*relaySeen{}
	for {
		now := time.Now()
		d.watchRelays(seen, now)
		d.watchAddrs()
		for _, ev := range d.watch.due(now) {
			d.evMu.Lock()
			d.emitLogged(mustJSON(ev))
			d.evMu.Unlock()
		}
		select {
		case <-d.done:
			return
		case <-tick.C:
		}
	}
}

func (d *Daemon) watchRelays(seen map[peer.ID]*relaySeen, now time.Time) {
	for _, r := range d.n.Transport().Relays() {
		s := seen[r.Relay]
		if s == nil {
			s = &relaySeen{}
			seen[r.Relay] = s
		}
		switch {
		case r.Reserved && !s.reserved:
			d.log.Info("relay reservation held", "relay", r.Relay, "expires", r.Expires.Format(time.RFC3339))
			s.reserved, s.lastErr = true, ""
		case !r.Reserved && r.Attempt > 0 && (s.reserved || r.LastError != s.lastErr || now.Sub(s.warnedAt) >= relayRewarn):
			d.log.Warn("no reservation on relay: peers cannot reach this node through it", "relay", r.Relay, "attempt", r.Attempt,
				"nextTry", untilText(r.NextTry, now), "err", oneLine(r.LastError))
			s.reserved, s.lastErr, s.warnedAt = false, r.LastError, now
		}
	}
}

// untilText says when t is, from now: "in 3s", or "now".
func untilText(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	if d := t.Sub(now); d > 0 {
		return "in " + d.Round(100*time.Millisecond).String()
	}
	return "now"
}

func (d *Daemon) watchAddrs() {
	addrs := d.n.ListenAddrs()
	if addrs == nil || slices.Equal(addrs, d.lastAddrs) {
		return
	}
	d.lastAddrs = addrs
	d.log.Info("addresses changed", "addrs", addrs)
	d.evMu.Lock()
	d.emitLogged(mustJSON(struct {
		Event string   `json:"event"`
		Addrs []string `json:"addrs"`
	}{"addrs", addrs}))
	d.evMu.Unlock()
}

// readyPoll is how often Start looks at the relays while it waits for them.
const readyPoll = 25 * time.Millisecond

// waitRelays waits, ReadyWait at most, until every configured relay holds a
// reservation or has failed its first attempt.
func (d *Daemon) waitRelays(ctx context.Context) {
	if d.opts.ReadyWait < 0 || len(d.n.Transport().Relays()) == 0 {
		return
	}
	deadline := time.Now().Add(d.opts.ReadyWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		settled := true
		for _, r := range d.n.Transport().Relays() {
			settled = settled && (r.Reserved || r.Attempt > 0)
		}
		if settled {
			return
		}
		time.Sleep(readyPoll)
	}
}

// Health is the daemon's health: "ok", or "degraded" with the problems.
type Health struct {
	Status   string   `json:"status"`
	Problems []string `json:"problems,omitempty"`
}

func (d *Daemon) health() Health {
	rs := d.n.Transport().Relays()
	if len(rs) == 0 {
		return Health{Status: "ok"}
	}
	var last string
	for _, r := range rs {
		if r.Reserved {
			return Health{Status: "ok"}
		}
		if r.LastError != "" {
			last = oneLine(r.LastError)
		}
	}
	p := fmt.Sprintf("no relay reservation held (%d relays configured): peers that cannot dial this node directly cannot reach it", len(rs))
	if last != "" {
		p += "; last error: " + last
	}
	return Health{Status: "degraded", Problems: []string{p}}
}

// RelayInfo is the reservation state of one configured relay.
type RelayInfo struct {
	Relay         string    `json:"relay"`
	Reserved      bool      `json:"reserved"`
	Expires       time.Time `json:"expires,omitzero"`
	Attempt       int       `json:"attempt,omitempty"`
	NextTry       time.Time `json:"nextTry,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorLine string    `json:"lastErrorLine,omitempty"`
}

func relayInfos(rs []transport.RelayStatus) []RelayInfo {
	out := []RelayInfo{}
	for _, r := range rs {
		out = append(out, RelayInfo{r.Relay.String(), r.Reserved, r.Expires, r.Attempt, r.NextTry, r.LastError, oneLine(r.LastError)})
	}
	return out
}
