package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Group commit under many concurrent writers: every update is committed
// exactly once, sequence numbers are contiguous, a failing update does not
// fail the others.
func TestGroupCommitConcurrent(t *testing.T) {
	s := open(t, t.TempDir())
	const writers, each = 16, 50
	var wg sync.WaitGroup
	seqs := make(chan uint64, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var seq uint64
				err := s.Update(func(tx *Tx) (err error) {
					seq, err = tx.AppendOut("peerA", OutRecord{Method: "m", Params: json.RawMessage(fmt.Sprintf(`[%d,%d]`, w, i))})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
				if i%10 == 0 {
					bad := errors.New("bad op")
					if err := s.Update(func(tx *Tx) error { _, _ = tx.AppendOut("peerA", OutRecord{Method: "x"}); return bad }); !errors.Is(err, bad) {
						t.Errorf("failing update returned %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for q := range seqs {
		if seen[q] {
			t.Fatalf("seq %d assigned twice", q)
		}
		seen[q] = true
	}
	var out []OutRecord
	var rec PeerRecord
	_ = s.View(func(tx *Tx) (err error) {
		out, err = tx.Out("peerA", 0, 0)
		rec, _, _ = tx.Peer("peerA")
		return err
	})
	if len(out) != writers*each || rec.NextSeq != writers*each {
		t.Fatalf("log has %d messages, nextSeq %d, want %d (failed updates must leave nothing)", len(out), rec.NextSeq, writers*each)
	}
	for i, r := range out {
		if r.Seq != uint64(i+1) || !seen[r.Seq] {
			t.Fatalf("log position %d has seq %d", i, r.Seq)
		}
	}
}

// A panic in one update of a batch becomes that caller's error; the other
// updates of the same batch commit, and the store goes on working.
func TestUpdatePanicIsolated(t *testing.T) {
	s := open(t, t.TempDir())
	boom := errors.New("boom")
	mk := func(fn func(*Tx) error) *update { return &update{fn: fn, done: make(chan struct{})} }
	appendTo := func(peer string) func(*Tx) error {
		return func(tx *Tx) error { _, err := tx.AppendOut(peer, OutRecord{Method: "m"}); return err }
	}
	batch := []*update{
		mk(appendTo("a")),
		mk(func(tx *Tx) error {
			if _, err := tx.AppendOut("p", OutRecord{Method: "m"}); err != nil {
				return err
			}
			panic(boom)
		}),
		mk(appendTo("b")),
		mk(func(*Tx) error { panic("plain value") }),
	}
	s.commit(batch) // one batch, as commitLoop would run it
	for i, u := range batch {
		<-u.done
		switch i {
		case 0, 2:
			if u.err != nil {
				t.Errorf("update %d: %v, want nil", i, u.err)
			}
		case 1, 3:
			var pe *PanicError
			if !errors.Is(u.err, ErrUpdatePanicked) || !errors.As(u.err, &pe) || !strings.Contains(u.err.Error(), "TestUpdatePanicIsolated") {
				t.Errorf("update %d: %v, want a *PanicError with the stack", i, u.err)
			}
			if i == 1 && !errors.Is(u.err, boom) {
				t.Errorf("update 1: %v does not wrap the panic's error", u.err)
			}
		}
	}
	_ = s.View(func(tx *Tx) error {
		for peer, want := range map[string]int{"a": 1, "b": 1, "p": 0} {
			if out, err := tx.Out(peer, 0, 0); err != nil || len(out) != want {
				t.Errorf("peer %s has %d messages (%v), want %d", peer, len(out), err, want)
			}
		}
		return nil
	})
	// Through Update: the panicking caller gets the error, the store works.
	if err := s.Update(func(*Tx) error { panic(boom) }); !errors.Is(err, ErrUpdatePanicked) {
		t.Fatalf("Update of a panicking function: %v", err)
	}
	if err := s.Update(appendTo("a")); err != nil {
		t.Fatalf("Update after a panic: %v", err)
	}
}
