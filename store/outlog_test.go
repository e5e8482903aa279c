package store

import (
	"encoding/json"
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
	var acked []OutRecord
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 3); return })
	if len(acked) != 3 || acked[0].Seq != 1 || string(acked[2].Tag) != "2" {
		t.Fatalf("acked %+v", acked)
	}
	// Duplicate and stale acks change nothing; acks beyond are clamped.
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 2); return })
	if len(acked) != 0 {
		t.Fatalf("stale ack deleted %v", acked)
	}
	var parked []OutRecord
	_ = s.Update(func(tx *Tx) (err error) { parked, err = tx.ParkOut("p"); return })
	if len(parked) != 2 || parked[0].Seq != 4 || !parked[1].Parked {
		t.Fatalf("parked %+v", parked)
	}
	var rec PeerRecord
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 99); rec, _, _ = tx.Peer("p"); return })
	if rec.Acked != 5 || len(acked) != 2 {
		t.Fatalf("clamped ack: acked %d records, Acked=%d", len(acked), rec.Acked)
	}
	_ = s.Update(func(tx *Tx) error { return tx.ForgetPeer("p") })
	var ok bool
	_ = s.View(func(tx *Tx) (err error) { _, ok, err = tx.Peer("p"); return })
	if ok {
		t.Fatal("peer still stored after ForgetPeer")
	}
}
