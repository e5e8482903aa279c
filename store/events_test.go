package store

import (
	"fmt"
	"testing"
)

func TestEventLog(t *testing.T) {
	s := open(t, t.TempDir())
	for i := range 5 {
		if id, err := s.AppendEvent(fmt.Appendf(nil, `{"n":%d}`, i)); err != nil || id != uint64(i+1) {
			t.Fatalf("AppendEvent: %d %v, want %d", id, err, i+1)
		}
	}
	if evs, err := s.Events(1, 2); err != nil || len(evs) != 2 || evs[0].ID != 2 || string(evs[1].Data) != `{"n":2}` {
		t.Fatalf("Events(1, 2): %+v %v", evs, err)
	}
	if n, err := s.TrimEvents(3); err != nil || n != 3 {
		t.Fatalf("TrimEvents(3): %d %v", n, err)
	}
	if n, err := s.TrimEvents(3); err != nil || n != 0 {
		t.Fatalf("TrimEvents(3) again: %d %v", n, err)
	}
	if evs, err := s.Events(0, 10); err != nil || len(evs) != 2 || evs[0].ID != 4 {
		t.Fatalf("after trim: %+v %v", evs, err)
	}
	// IDs are not reused after a trim.
	if id, err := s.AppendEvent([]byte(`{}`)); err != nil || id != 6 {
		t.Fatalf("AppendEvent after trim: %d %v", id, err)
	}
}

// A reader asking for a byte budget gets no more than fits, but at least
// one event.
func TestEventsWithin(t *testing.T) {
	s := open(t, t.TempDir())
	for range 5 {
		if _, err := s.AppendEvent(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ budget, want int }{{0, 1}, {99, 1}, {200, 2}, {299, 2}, {1000, 5}, {-1, 5}} {
		if evs, err := s.EventsWithin(0, 10, c.budget); err != nil || len(evs) != c.want {
			t.Errorf("EventsWithin(0, 10, %d): %d events %v, want %d", c.budget, len(evs), err, c.want)
		}
	}
}
