package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// logModel is what a peer's outbound log should hold.
type logModel struct {
	next, acked uint64
	recs        []modelRec // in seq order
}

type modelRec struct {
	seq    uint64
	parked bool
	tag    string
}

func (m *logModel) parked() (rs []modelRec) {
	for _, r := range m.recs {
		if r.parked {
			rs = append(rs, r)
		}
	}
	return rs
}

// checkLog compares the peer's stored log with m and checks the schema-3
// invariants: every stored message is unacknowledged, OutLen counts them,
// and exactly those numbered Acked+1..ParkedTo are parked.
func checkLog(tx *Tx, id string, m *logModel) error {
	rec, _, err := tx.Peer(id)
	if err != nil {
		return err
	}
	all, err := tx.Out(id, 0, 0)
	if err != nil {
		return err
	}
	if rec.NextSeq != m.next || rec.Acked != m.acked {
		return fmt.Errorf("NextSeq %d Acked %d, want %d %d", rec.NextSeq, rec.Acked, m.next, m.acked)
	}
	if rec.OutLen != uint64(len(all)) {
		return fmt.Errorf("OutLen %d, log holds %d", rec.OutLen, len(all))
	}
	if rec.ParkedTo != 0 && (rec.ParkedTo <= rec.Acked || rec.ParkedTo > rec.NextSeq) {
		return fmt.Errorf("ParkedTo %d outside (Acked %d, NextSeq %d]", rec.ParkedTo, rec.Acked, rec.NextSeq)
	}
	if len(all) != len(m.recs) {
		return fmt.Errorf("log holds %d messages, want %d", len(all), len(m.recs))
	}
	for i, r := range all {
		w := m.recs[i]
		if r.Seq != w.seq || r.Parked != w.parked || string(r.Tag) != w.tag {
			return fmt.Errorf("message %d: seq %d parked %v tag %s, want %+v", i, r.Seq, r.Parked, r.Tag, w)
		}
		if r.Seq <= rec.Acked || r.Parked != (r.Seq <= rec.ParkedTo) {
			return fmt.Errorf("message %d (parked %v) against Acked %d ParkedTo %d", r.Seq, r.Parked, rec.Acked, rec.ParkedTo)
		}
	}
	parked, err := tx.Parked(id, 0)
	if err != nil {
		return err
	}
	if want := m.parked(); len(parked) != len(want) {
		return fmt.Errorf("Parked returned %d, want %d", len(parked), len(want))
	}
	return nil
}

func seqsOf(rs []OutRecord) []uint64 {
	var s []uint64
	for _, r := range rs {
		s = append(s, r.Seq)
	}
	return s
}

func modelSeqs(rs []modelRec) []uint64 {
	var s []uint64
	for _, r := range rs {
		s = append(s, r.seq)
	}
	return s
}

// randomLogOp applies one random operation to the store and to m.
func randomLogOp(tx *Tx, rng *rand.Rand, id string, m *logModel, tags *int) (string, error) {
	newTag := func() string { *tags++; return fmt.Sprintf(`"t%d"`, *tags) }
	switch op := rng.IntN(9); op {
	case 0, 1: // append, parked or not
		parked := op == 1
		tag := newTag()
		seq, err := tx.AppendOut(id, OutRecord{Method: "m", Tag: []byte(tag), Parked: parked})
		allowed := !parked || !slices.ContainsFunc(m.recs, func(r modelRec) bool { return !r.parked })
		if !allowed {
			if !errors.Is(err, ErrParkedOrder) {
				return "append parked after unparked", fmt.Errorf("got %v, want ErrParkedOrder", err)
			}
			return "append parked refused", nil
		}
		m.next++
		m.recs = append(m.recs, modelRec{m.next, parked, tag})
		if err == nil && seq != m.next {
			err = fmt.Errorf("seq %d, want %d", seq, m.next)
		}
		return fmt.Sprintf("append parked=%v", parked), err
	case 2: // ack
		upTo := rng.Uint64N(m.next + 3)
		if _, err := tx.Ack(id, upTo); err != nil {
			return "ack", err
		}
		if upTo > m.acked {
			m.acked = min(upTo, m.next)
			m.recs = slices.DeleteFunc(m.recs, func(r modelRec) bool { return r.seq <= m.acked })
		}
		return fmt.Sprintf("ack %d", upTo), nil
	case 3: // park
		rs, err := tx.ParkOut(id)
		var want []uint64
		for i := range m.recs {
			if !m.recs[i].parked {
				want = append(want, m.recs[i].seq)
				m.recs[i].parked = true
			}
		}
		if err == nil && !slices.Equal(seqsOf(rs), want) {
			err = fmt.Errorf("parked %v, want %v", seqsOf(rs), want)
		}
		return "park", err
	case 4: // unpark
		rs, err := tx.UnparkOut(id)
		want := modelSeqs(m.parked())
		for i := range m.recs {
			m.recs[i].parked = false
		}
		if err == nil && !slices.Equal(seqsOf(rs), want) {
			err = fmt.Errorf("unparked %v, want %v", seqsOf(rs), want)
		}
		return "unpark", err
	case 5: // discard
		rs, err := tx.DiscardParked(id)
		want := modelSeqs(m.parked())
		if len(want) > 0 {
			m.recs = slices.DeleteFunc(m.recs, func(r modelRec) bool { return r.parked })
			m.acked = m.next
			if len(m.recs) > 0 {
				m.acked = m.recs[0].seq - 1
			}
		}
		if err == nil && !slices.Equal(seqsOf(rs), want) {
			err = fmt.Errorf("discarded %v, want %v", seqsOf(rs), want)
		}
		return "discard", err
	case 6: // delete some
		var del []uint64
		for _, r := range m.recs {
			if rng.IntN(3) == 0 {
				del = append(del, r.seq)
			}
		}
		del = append(del, m.next+5) // not in the log: ignored
		m.recs = slices.DeleteFunc(m.recs, func(r modelRec) bool { return slices.Contains(del, r.seq) })
		return fmt.Sprintf("delete %v", del), tx.DeleteOut(id, del)
	case 7: // renumber from 1 and park, as the node does on a peer restart
		rec, _, err := tx.Peer(id)
		if err != nil {
			return "renumber", err
		}
		old, err := tx.Out(id, rec.Acked+1, 0)
		if err != nil {
			return "renumber", err
		}
		if err := tx.DeleteOut(id, seqsOf(old)); err != nil {
			return "renumber", err
		}
		rec.NextSeq, rec.Acked = 0, 0 // rec's ParkedTo and OutLen are stale now
		if err := tx.PutPeer(id, rec); err != nil {
			return "renumber", err
		}
		m.next, m.acked, m.recs = 0, 0, nil
		for _, r := range old {
			r.Parked = true
			if _, err := tx.AppendOut(id, r); err != nil {
				return "renumber", err
			}
			m.next++
			m.recs = append(m.recs, modelRec{m.next, true, string(r.Tag)})
		}
		return "renumber", nil
	default: // PutPeer with nonsense in the store-kept fields
		rec, _, err := tx.Peer(id)
		if err != nil {
			return "put", err
		}
		rec.ParkedTo, rec.OutLen = rng.Uint64N(100), rng.Uint64N(100)
		return "put junk", tx.PutPeer(id, rec)
	}
}

// The parked boundary and log length stay consistent with the log through
// random appends, acks, parks, unparks, discards, deletes, renumbering and
// PutPeer calls, in and across transactions and a reopen; tags survive.
func TestParkedBoundaryConsistent(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			rng := rand.New(rand.NewPCG(seed, 1))
			m, tags := &logModel{}, 0
			var trace []string
			for range 60 {
				err := s.Update(func(tx *Tx) error {
					for range 1 + rng.IntN(4) {
						what, err := randomLogOp(tx, rng, "p", m, &tags)
						trace = append(trace, what)
						if err == nil {
							err = checkLog(tx, "p", m)
						}
						if err != nil {
							return fmt.Errorf("after %v: %w", trace, err)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.View(func(tx *Tx) error { return checkLog(tx, "p", m) }); err != nil {
					t.Fatalf("committed, after %v: %v", trace, err)
				}
			}
			s.Close()
			s = open(t, dir)
			if err := s.View(func(tx *Tx) error { return checkLog(tx, "p", m) }); err != nil {
				t.Fatalf("after reopen: %v", err)
			}
		})
	}
}
