package store

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// ParkOut marks every unacknowledged, unparked message of the peer as
// parked and returns them (a give-up hands them to the application).
func (t *Tx) ParkOut(id string) ([]OutRecord, error) {
	all, err := t.Out(id, 0, 0)
	if err != nil {
		return nil, err
	}
	b, _ := t.peerBucket(id, false)
	var parked []OutRecord
	for _, r := range all {
		if r.Parked {
			continue
		}
		r.Parked = true
		data, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		if err := b.Bucket(bucketOut).Put(seqKey(r.Seq), data); err != nil {
			return nil, err
		}
		parked = append(parked, r)
	}
	return parked, nil
}

// UnparkOut clears the parked mark of every parked message of the peer, so
// they are sent again with their sequence numbers, and returns them.
func (t *Tx) UnparkOut(id string) ([]OutRecord, error) {
	return t.rewriteParked(id, func(b *bolt.Bucket, r OutRecord) error {
		r.Parked = false
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put(seqKey(r.Seq), data)
	})
}

// DiscardParked deletes every parked message of the peer and returns them.
// Their sequence numbers are not reused: the peer sees a gap. The peer's
// Acked moves past parked messages at the front of the log, so they no longer
// count as unacknowledged.
func (t *Tx) DiscardParked(id string) ([]OutRecord, error) {
	gone, err := t.rewriteParked(id, func(b *bolt.Bucket, r OutRecord) error {
		return b.Delete(seqKey(r.Seq))
	})
	if err != nil || len(gone) == 0 {
		return gone, err
	}
	rec, _, err := t.Peer(id)
	if err != nil {
		return nil, err
	}
	rest, err := t.Out(id, rec.Acked+1, 1)
	if err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		rec.Acked = rec.NextSeq
	} else {
		rec.Acked = rest[0].Seq - 1
	}
	return gone, t.PutPeer(id, rec)
}

func (t *Tx) rewriteParked(id string, f func(*bolt.Bucket, OutRecord) error) ([]OutRecord, error) {
	all, err := t.Out(id, 0, 0)
	if err != nil {
		return nil, err
	}
	b, _ := t.peerBucket(id, false)
	var done []OutRecord
	for _, r := range all {
		if !r.Parked {
			continue
		}
		if err := f(b.Bucket(bucketOut), r); err != nil {
			return nil, err
		}
		done = append(done, r)
	}
	return done, nil
}
