package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestAckAndPark(t *testing.T) {
	s := open(t, t.TempDir())
	for i := range 5 {
		if err := s.Update(func(tx *Tx) error {
			_, err := tx.AppendOut("p", OutRecord{Method: "m", Tag: json.RawMessage(fmt.Sprint(i))})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var acked int
	var left []OutRecord
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 3); left, _ = tx.Out("p", 0, 0); return })
	if acked != 3 || len(left) != 2 || left[0].Seq != 4 || string(left[0].Tag) != "3" {
		t.Fatalf("acked %d, left %+v", acked, left)
	}
	// Duplicate and stale acks change nothing; acks beyond are clamped.
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 2); return })
	if acked != 0 {
		t.Fatalf("stale ack deleted %d", acked)
	}
	var parked []OutRecord
	_ = s.Update(func(tx *Tx) (err error) { parked, err = tx.ParkOut("p"); return })
	if len(parked) != 2 || parked[0].Seq != 4 || !parked[1].Parked {
		t.Fatalf("parked %+v", parked)
	}
	var rec PeerRecord
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 99); rec, _, _ = tx.Peer("p"); return })
	if rec.Acked != 5 || acked != 2 {
		t.Fatalf("clamped ack: acked %d records, Acked=%d", acked, rec.Acked)
	}
	_ = s.Update(func(tx *Tx) error { return tx.ForgetPeer("p") })
	var ok bool
	_ = s.View(func(tx *Tx) (err error) { _, ok, err = tx.Peer("p"); return })
	if ok {
		t.Fatal("peer still stored after ForgetPeer")
	}
}

// Ack deletes exactly the acknowledged messages of a log spanning many
// pages, whether they were written in the same transaction or before.
func TestAckDeletesRange(t *testing.T) {
	s := open(t, t.TempDir())
	check := func(wantLeft int) {
		t.Helper()
		_ = s.View(func(tx *Tx) error {
			rec, _, _ := tx.Peer("p")
			all, err := tx.Out("p", 0, 0)
			if err != nil || len(all) != wantLeft || rec.OutLen != uint64(wantLeft) || (wantLeft > 0 && all[0].Seq != rec.Acked+1) {
				t.Fatalf("left %d (OutLen %d, Acked %d, %v), want %d", len(all), rec.OutLen, rec.Acked, err, wantLeft)
			}
			return nil
		})
	}
	// Same transaction.
	if err := s.Update(func(tx *Tx) error {
		top, err := appendN(tx, "p", 4096)
		if err != nil {
			return err
		}
		n, err := tx.Ack("p", top-100)
		if err == nil && n != 3996 {
			err = fmt.Errorf("Ack deleted %d, want 3996", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	check(100)
	// Committed before the ack.
	if err := s.Update(func(tx *Tx) error { _, err := appendN(tx, "p", 4096); return err }); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Update(func(tx *Tx) (err error) { n, err = tx.Ack("p", 4096+4000); return }); err != nil || n != 4100 {
		t.Fatalf("Ack deleted %d (%v), want 4100", n, err)
	}
	check(96)
}

// corruptOut overwrites message seq of a peer's log with data.
func corruptOut(t *testing.T, s *Store, id string, seq uint64, data []byte) {
	t.Helper()
	if err := s.Update(func(tx *Tx) error {
		b, err := tx.outBucket(id, false)
		if err != nil {
			return err
		}
		return b.Put(seqKey(seq), data)
	}); err != nil {
		t.Fatal(err)
	}
}

// Out with a limit reads no further than it returns (a damaged message
// after the limit is not touched), ForEachPeer reads no log, and reading a
// damaged message gives ErrCorrupt.
func TestReadsStopEarly(t *testing.T) {
	s := open(t, t.TempDir())
	damaged := map[string][]byte{"p": []byte("{not json"), "q": {outBinary, 0, 5, 'a'}} // JSON, truncated binary
	for id, data := range damaged {
		if err := s.Update(func(tx *Tx) error { _, err := appendN(tx, id, 10); return err }); err != nil {
			t.Fatal(err)
		}
		corruptOut(t, s, id, 8, data)
	}
	err := s.View(func(tx *Tx) error {
		if out, err := tx.Out("p", 3, 5); err != nil || len(out) != 5 || out[4].Seq != 7 {
			return fmt.Errorf("Out(3, limit 5): %d messages, %v", len(out), err)
		}
		n := 0
		if err := tx.ForEachPeer(func(id string, r PeerRecord) error {
			n++
			if r.OutLen != 10 {
				return fmt.Errorf("%s: OutLen %d", id, r.OutLen)
			}
			return nil
		}); err != nil || n != 2 {
			return fmt.Errorf("ForEachPeer: %d peers, %v", n, err)
		}
		for id := range damaged {
			if _, err := tx.Out(id, 0, 0); !errors.Is(err, ErrCorrupt) {
				return fmt.Errorf("%s: reading the damaged message: %v, want ErrCorrupt", id, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Ack deletes the damaged message without decoding it.
	if err := s.Update(func(tx *Tx) error { _, err := tx.Ack("p", 10); return err }); err != nil {
		t.Fatalf("Ack over a damaged message: %v", err)
	}
}

// Ack deletes acknowledged messages without decoding them: messages whose
// stored bytes no decoder accepts are deleted all the same, while reading
// them reports the damage.
func TestAckDoesNotDecode(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Update(func(tx *Tx) error {
		for range 4 {
			if _, err := tx.AppendOut("p", OutRecord{Method: "m", Params: json.RawMessage(`1`)}); err != nil {
				return err
			}
		}
		b, err := tx.outBucket("p", false)
		if err != nil {
			return err
		}
		for _, seq := range []uint64{1, 2, 3} {
			if err := b.Put(seqKey(seq), []byte{outBinary, 0xff}); err != nil { // unknown flags: undecodable
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(tx *Tx) error { _, err := tx.Out("p", 1, 0); return err }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading the damaged messages: %v, want ErrCorrupt", err)
	}
	var acked int
	var left []OutRecord
	if err := s.Update(func(tx *Tx) (err error) {
		if acked, err = tx.Ack("p", 3); err != nil {
			return err
		}
		left, err = tx.Out("p", 0, 0)
		return err
	}); err != nil {
		t.Fatalf("Ack of undecodable messages: %v", err)
	}
	if acked != 3 || len(left) != 1 || left[0].Seq != 4 {
		t.Fatalf("acked %d, left %+v; want 3 deleted and message 4 left", acked, left)
	}
}
