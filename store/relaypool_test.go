package store

import (
	"fmt"
	"testing"
	"time"
)

// Relay pool rules of reference §4.5 / §8.9 #113.
func TestRelayPool(t *testing.T) {
	s := open(t, t.TempDir())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pool []RelayEntry
	get := func() []RelayEntry {
		_ = s.View(func(tx *Tx) (err error) { pool, err = tx.Relays(); return })
		return pool
	}
	if len(get()) != 0 {
		t.Fatal("new pool not empty")
	}
	update := func(f func(tx *Tx) error) {
		if err := s.Update(f); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *Tx) error { return tx.SetBootstrapRelays([]string{"b1", "b2"}, t0, 4) })
	for i := range 4 {
		update(func(tx *Tx) error {
			return tx.AddKnownRelays([]string{fmt.Sprintf("l%d", i)}, t0.Add(time.Duration(i)*time.Hour), 4)
		})
	}
	got := get()
	if len(got) != 4 || got[0].Addr != "b1" || got[1].Addr != "b2" || got[2].Addr != "l3" || got[3].Addr != "l2" {
		t.Fatalf("capped pool %+v: want bootstrap first, then newest learned", got)
	}
	// An empty relay list leaves the pool alone; a new list moves the flag.
	update(func(tx *Tx) error { return tx.SetBootstrapRelays(nil, t0, 4) })
	update(func(tx *Tx) error { return tx.SetBootstrapRelays([]string{"b2"}, t0.Add(10*time.Hour), 4) })
	got = get()
	if got[0].Addr != "b2" || !got[0].IsBootstrap {
		t.Fatalf("after new bootstrap list: %+v", got)
	}
	for _, e := range got {
		if e.Addr == "b1" && e.IsBootstrap {
			t.Fatalf("b1 kept the bootstrap flag: %+v", got)
		}
	}
	// Refreshing a known relay does not duplicate it.
	update(func(tx *Tx) error { return tx.AddKnownRelays([]string{"l3"}, t0.Add(20*time.Hour), 4) })
	count := 0
	for _, e := range get() {
		if e.Addr == "l3" {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("l3 appears %d times", count)
	}
}
