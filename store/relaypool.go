package store

import (
	"slices"
	"sort"
	"time"
)

// RelayEntry is one relay of the pool (reference §4.5).
type RelayEntry struct {
	Addr        string    `json:"addr"`
	LastSeen    time.Time `json:"lastSeen"`
	IsBootstrap bool      `json:"isBootstrap"`
}

// Relays returns the relay pool.
func (t *Tx) Relays() ([]RelayEntry, error) {
	var pool []RelayEntry
	_, err := getJSON(t.tx.Bucket(bucketMeta), keyRelays, &pool)
	return pool, err
}

// SetBootstrapRelays applies upstream's rule for configured relays: each
// becomes a bootstrap entry seen now; stored bootstrap entries not in the
// list lose the flag; then the pool is capped. An empty list leaves the pool
// untouched.
func (t *Tx) SetBootstrapRelays(addrs []string, now time.Time, maxKnown int) error {
	if len(addrs) == 0 {
		return nil
	}
	pool, err := t.Relays()
	if err != nil {
		return err
	}
	for i := range pool {
		pool[i].IsBootstrap = false
	}
	for _, a := range addrs {
		if i := slices.IndexFunc(pool, func(e RelayEntry) bool { return e.Addr == a }); i >= 0 {
			pool[i].IsBootstrap, pool[i].LastSeen = true, now
		} else {
			pool = append(pool, RelayEntry{Addr: a, LastSeen: now, IsBootstrap: true})
		}
	}
	return putJSON(t.tx.Bucket(bucketMeta), keyRelays, capPool(pool, maxKnown))
}

// AddKnownRelays adds learned relays (or refreshes their lastSeen), then
// caps the pool.
func (t *Tx) AddKnownRelays(addrs []string, now time.Time, maxKnown int) error {
	pool, err := t.Relays()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if i := slices.IndexFunc(pool, func(e RelayEntry) bool { return e.Addr == a }); i >= 0 {
			pool[i].LastSeen = now
		} else {
			pool = append(pool, RelayEntry{Addr: a, LastSeen: now})
		}
	}
	return putJSON(t.tx.Bucket(bucketMeta), keyRelays, capPool(pool, maxKnown))
}

// capPool keeps bootstrap entries first (in stored order), then learned
// entries by lastSeen, newest first, and truncates to maxKnown (default 20).
func capPool(pool []RelayEntry, maxKnown int) []RelayEntry {
	if maxKnown <= 0 {
		maxKnown = 20
	}
	var boot, learned []RelayEntry
	for _, e := range pool {
		if e.IsBootstrap {
			boot = append(boot, e)
		} else {
			learned = append(learned, e)
		}
	}
	sort.SliceStable(learned, func(i, j int) bool { return learned[i].LastSeen.After(learned[j].LastSeen) })
	out := append(boot, learned...)
	if len(out) > maxKnown {
		out = out[:maxKnown]
	}
	return out
}
