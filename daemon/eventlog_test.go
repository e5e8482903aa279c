package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/store"
)

func openTestLog(t *testing.T, dir string, maxBytes int64, maxAge time.Duration, now func() time.Time) (*store.Store, *eventLog) {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := openEventLog(st, maxBytes, maxAge, slog.New(slog.DiscardHandler), now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.stop(); st.Close() })
	return st, l
}

// appendMany appends n events of about size bytes from 8 goroutines (so
// that they share commits, and are accounted out of order).
func appendMany(t *testing.T, l *eventLog, n, size int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := l.append(event(i, size)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func event(i, size int) []byte {
	return []byte(fmt.Sprintf(`{"event":"message","seq":%d,"params":"%s"}`, i, strings.Repeat("x", size)))
}

// readAll returns every event in the log.
func readAll(t *testing.T, l *eventLog) []storedEvent {
	t.Helper()
	var out []storedEvent
	after := uint64(0)
	for {
		evs, err := l.read(after, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].ID
	}
}

func droppedEvents(evs []storedEvent) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		var m map[string]any
		json.Unmarshal(e.Data, &m)
		if m["event"] == "dropped" {
			out = append(out, m)
		}
	}
	return out
}

// Retention by size keeps the log near its limit and announces every range
// it deletes; the accounting survives a restart.
func TestEventLogRetentionBySize(t *testing.T) {
	dir := t.TempDir()
	const limit = 256 << 10
	st, l := openTestLog(t, dir, -1, -1, nil)
	appendMany(t, l, 800, 900)
	l.stop()
	st.Close()
	st, l = openTestLog(t, dir, limit, -1, nil)
	if err := l.enforce(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	total := l.total
	l.mu.Unlock()
	if total > limit {
		t.Fatalf("log holds %d bytes, limit %d", total, limit)
	}
	evs := readAll(t, l)
	drops := droppedEvents(evs)
	if len(drops) != 1 {
		t.Fatalf("dropped events %v, want one", drops)
	}
	// The dropped ranges and what is left cover every ID once.
	covered := map[uint64]int{}
	for _, d := range drops {
		for id := uint64(d["from"].(float64)); id <= uint64(d["to"].(float64)); id++ {
			covered[id]++
		}
		if !strings.Contains(d["reason"].(string), "size limit") {
			t.Fatalf("reason %v", d)
		}
	}
	for _, e := range evs {
		covered[e.ID]++
	}
	last := evs[len(evs)-1].ID // the dropped event, appended last
	for id := uint64(1); id <= last; id++ {
		if covered[id] != 1 {
			t.Fatalf("event %d covered %d times (dropped ranges %v)", id, covered[id], drops)
		}
	}
	// The stored bytes match the accounting, also after a restart.
	var stored int64
	for _, e := range evs {
		stored += e.size
	}
	if stored != total {
		t.Fatalf("accounted %d bytes, stored %d", total, stored)
	}
	l.stop()
	st.Close()
	_, l2 := openTestLog(t, dir, limit, -1, nil)
	l2.mu.Lock()
	defer l2.mu.Unlock()
	if l2.total != total {
		t.Fatalf("after reopening: %d bytes, before %d", l2.total, total)
	}
}

// Retention by age deletes what is older than the limit, and says so.
func TestEventLogRetentionByAge(t *testing.T) {
	var offset atomic.Int64 // how far the clock is behind
	offset.Store(int64(2 * time.Hour))
	_, l := openTestLog(t, t.TempDir(), -1, time.Hour, func() time.Time { return time.Now().Add(-time.Duration(offset.Load())) })
	for i := 1; i <= 10; i++ {
		l.append(event(i, 10))
	}
	offset.Store(0)
	for i := 11; i <= 15; i++ {
		l.append(event(i, 10))
	}
	if err := l.enforce(); err != nil {
		t.Fatal(err)
	}
	evs := readAll(t, l)
	drops := droppedEvents(evs)
	if len(drops) != 1 || drops[0]["from"] != 1.0 || drops[0]["to"] != 10.0 || !strings.Contains(drops[0]["reason"].(string), "age limit") {
		t.Fatalf("dropped %v", drops)
	}
	if evs[0].ID != 11 || len(evs) != 6 {
		t.Fatalf("left %d events from %d", len(evs), evs[0].ID)
	}
}

// A consumer's acknowledgement that cuts a segment keeps the accounting
// exact.
func TestEventLogTrimAccounting(t *testing.T) {
	_, l := openTestLog(t, t.TempDir(), -1, -1, nil)
	appendMany(t, l, 1000, 40)
	for _, upTo := range []uint64{3, 300, 301, 777} {
		if _, err := l.trim(upTo); err != nil {
			t.Fatal(err)
		}
		var stored int64
		evs := readAll(t, l)
		for _, e := range evs {
			stored += e.size
		}
		first, _, _ := l.position()
		l.mu.Lock()
		total := l.total
		l.mu.Unlock()
		if stored != total || first != upTo+1 || evs[0].ID != upTo+1 {
			t.Fatalf("after trimming to %d: accounted %d, stored %d, first %d", upTo, total, stored, first)
		}
	}
}

// Old events (bare JSON, before the header) are read as they are.
func TestEventLogReadsOldEvents(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.AppendEvent([]byte(`{"event":"old"}`))
	st.Close()
	_, l := openTestLog(t, dir, -1, -1, nil)
	evs := readAll(t, l)
	if len(evs) != 1 || !bytes.Equal(evs[0].Data, []byte(`{"event":"old"}`)) {
		t.Fatalf("%v", evs)
	}
}
