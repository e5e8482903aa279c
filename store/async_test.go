package store

import (
	"errors"
	"testing"
	"time"
)

// waitQueued waits until n updates wait for the next commit.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Queued < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d updates queued, want %d", s.Stats().Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// wedge holds the committer inside a transaction until the returned
// function is called.
func wedge(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, rel := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(func(*Tx) error {
			close(started)
			<-rel
			return nil
		})
	}()
	<-started
	return func() {
		close(rel)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// An asynchronous append is committed before anything queued after it, and
// in queue order with other asynchronous ones.
func TestUpdateAsyncOrder(t *testing.T) {
	s := open(t, t.TempDir())
	release := wedge(t, s)
	results := make(chan uint64, 100)
	for i := range 100 {
		s.AppendEventAsync([]byte{byte(i)}, func(id uint64, err error) {
			if err != nil {
				t.Error(err)
			}
			results <- id
		})
	}
	seen := make(chan int, 1)
	go func() {
		var n int
		err := s.Update(func(tx *Tx) error {
			c := tx.tx.Bucket(bucketEvents).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				n++
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		seen <- n
	}()
	waitQueued(t, s, 101)
	release()
	if n := <-seen; n != 100 {
		t.Fatalf("an update queued after 100 asynchronous appends saw %d of them", n)
	}
	for i := range 100 {
		if id := <-results; id != uint64(i+1) {
			t.Fatalf("append %d got ID %d", i, id)
		}
	}
	evs, err := s.Events(0, 200)
	if err != nil || len(evs) != 100 || evs[99].Data[0] != 99 {
		t.Fatalf("events %d, %v", len(evs), err)
	}
}

// A failed asynchronous update refuses what was queued after it, and every
// later update, until the store is reopened; what was queued before it
// commits.
func TestUpdateAsyncFailureRefusesLater(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	release := wedge(t, s)
	before := make(chan error, 1)
	go func() { before <- s.Update(func(tx *Tx) error { return tx.PutPeer("p", PeerRecord{NextSeq: 7}) }) }()
	waitQueued(t, s, 1)
	bad := errors.New("bad")
	asyncErr := make(chan error, 1)
	s.UpdateAsync(func(*Tx) error { return bad }, func(err error) { asyncErr <- err })
	after := make(chan error, 1)
	go func() { after <- s.Update(func(tx *Tx) error { return tx.PutPeer("q", PeerRecord{NextSeq: 1}) }) }()
	waitQueued(t, s, 3)
	release()
	if err := <-before; err != nil {
		t.Fatalf("the update queued before: %v", err)
	}
	if err := <-asyncErr; !errors.Is(err, bad) {
		t.Fatalf("the asynchronous update: %v", err)
	}
	if err := <-after; !errors.Is(err, ErrAsyncLost) || !errors.Is(err, ErrStorage) {
		t.Fatalf("the update queued after: %v", err)
	}
	if err := s.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrAsyncLost) {
		t.Fatalf("a later update: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	err := s.View(func(tx *Tx) error {
		p, _, err := tx.Peer("p")
		if err == nil && p.NextSeq != 7 {
			t.Errorf("the update before: NextSeq %d", p.NextSeq)
		}
		_, ok, err := tx.Peer("q")
		if err == nil && ok {
			t.Error("the update after was applied")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(*Tx) error { return nil }); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
}
