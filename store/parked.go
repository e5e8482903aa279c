package store

import (
	"encoding/binary"
	"fmt"
)

// Parked returns up to limit of the peer's parked messages, in order (limit
// ≤ 0: all), reading only those.
func (t *Tx) Parked(id string, limit int) ([]OutRecord, error) {
	rec, ok, err := t.Peer(id)
	if err != nil || !ok {
		return nil, err
	}
	from, to := rec.ParkedRange()
	if from > to {
		return nil, nil
	}
	return t.outRange(id, from, to, limit)
}

// ParkOut marks every unacknowledged, unparked message of the peer as
// parked and returns them (a give-up hands them to the application). It
// reads only those messages.
func (t *Tx) ParkOut(id string) ([]OutRecord, error) {
	rec, ok, err := t.Peer(id)
	if err != nil || !ok {
		return nil, err
	}
	rs, err := t.Out(id, rec.SendFrom(), 0)
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	if err := t.setParked(id, rs, true); err != nil {
		return nil, err
	}
	rec.ParkedTo = rs[len(rs)-1].Seq
	return rs, t.putPeer(id, rec)
}

// UnparkOut clears the parked mark of every parked message of the peer, so
// they are sent again with their sequence numbers, and returns them.
func (t *Tx) UnparkOut(id string) ([]OutRecord, error) {
	rs, err := t.Parked(id, 0)
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	if err := t.setParked(id, rs, false); err != nil {
		return nil, err
	}
	rec, _, _ := t.Peer(id)
	rec.ParkedTo = 0
	return rs, t.putPeer(id, rec)
}

// DiscardParked deletes every parked message of the peer and returns them.
// Their sequence numbers are not reused: the peer sees a gap. The peer's
// Acked moves past them (and past any numbers missing right after them), so
// they no longer count as unacknowledged.
func (t *Tx) DiscardParked(id string) ([]OutRecord, error) {
	rs, err := t.Parked(id, 0)
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	rec, _, _ := t.Peer(id)
	b, err := t.outBucket(id, false)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("store: peer %s: %w (parked messages but no outbound log)", id, ErrCorrupt)
	}
	n, err := deleteRange(b, rec.Acked+1, rec.ParkedTo)
	if err != nil {
		return nil, err
	}
	rec.OutLen -= min(rec.OutLen, uint64(n))
	rec.Acked = rec.NextSeq
	if k, _ := b.Cursor().Seek(seqKey(rec.ParkedTo + 1)); k != nil {
		rec.Acked = binary.BigEndian.Uint64(k) - 1
	}
	rec.ParkedTo = 0
	return rs, t.putPeer(id, rec)
}

// setParked rewrites rs (read from the peer's log) with the parked mark set
// to parked. rs[i].Parked is updated too.
func (t *Tx) setParked(id string, rs []OutRecord, parked bool) error {
	b, err := t.outBucket(id, false)
	if err != nil {
		return err
	}
	if b == nil && len(rs) > 0 {
		return fmt.Errorf("store: peer %s: %w (messages but no outbound log)", id, ErrCorrupt)
	}
	for i := range rs {
		rs[i].Parked = parked
		data, err := encodeOut(rs[i])
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(rs[i].Seq), data); err != nil {
			return fmt.Errorf("store: peer %s message %d: %w", id, rs[i].Seq, err)
		}
	}
	return nil
}
