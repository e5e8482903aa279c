package store

import (
	"fmt"
	"testing"
	"time"
)

// A peer that never had a message appended costs about its record on disk:
// its bucket has no sub-bucket, so bbolt keeps it inline in the peers
// bucket's pages rather than a 4 KiB page of its own (every identity of a
// flood that delivers one message leaves such a record). The outbound log
// appears with the first append.
func TestPeerWithoutLogStoredInline(t *testing.T) {
	s := open(t, t.TempDir())
	const n = 500
	id := func(i int) string { return fmt.Sprintf("peer-%04d", i) }
	if err := s.Update(func(tx *Tx) error {
		for i := range n {
			if err := tx.PutPeer(id(i), PeerRecord{Delivered: 1, Intent: 64, Incarnation: "inc", LastActive: time.Now().UTC()}); err != nil {
				return err
			}
		}
		_, err := tx.AppendOut(id(0), OutRecord{Method: "m"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(tx *Tx) error {
		// Buckets with pages of their own: the peers bucket and the peer
		// with a log; every other one (and that peer's small log) inline.
		st := tx.tx.Bucket(bucketPeers).Stats()
		if own := st.BucketN - st.InlineBucketN; own != 2 {
			t.Errorf("%d buckets with pages of their own (of %d), want 2: the peers bucket and the one peer with a log", own, st.BucketN)
		}
		if rs, err := tx.Out(id(1), 1, 0); err != nil || len(rs) != 0 {
			t.Errorf("a peer without a log: Out %v %v", rs, err)
		}
		if rs, err := tx.Out(id(0), 1, 0); err != nil || len(rs) != 1 {
			t.Errorf("the peer with a log: Out %v %v", rs, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Acknowledging, deleting and forgetting work on a peer without a log.
	if err := s.Update(func(tx *Tx) error {
		if n, err := tx.Ack(id(1), 5); err != nil || n != 0 {
			return fmt.Errorf("Ack: %d %w", n, err)
		}
		if err := tx.DeleteOut(id(1), []uint64{1}); err != nil {
			return err
		}
		return tx.ForgetPeer(id(1))
	}); err != nil {
		t.Fatal(err)
	}
}
