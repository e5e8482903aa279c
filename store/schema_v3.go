package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// migrateV3 brings a schema-2 file to schema 3, which keeps each peer's
// parked boundary (ParkedTo) and log length (OutLen) in its record so that
// a start need not read the logs. It reads every peer's log once:
//
//   - OutLen is the number of messages left after the next step.
//   - Messages numbered ≤ Acked (acknowledged; schema 2 never left any)
//     are deleted.
//   - ParkedTo is the last parked message. Schema 2 let a parked message
//     follow unparked ones (the node never wrote that, it parks the whole
//     window); such unparked messages before the last parked one are marked
//     parked, which is how the schema-2 node treated them: it held back
//     everything up to its last parked message.
func migrateV3(tx *bolt.Tx) error {
	peers := tx.Bucket(bucketPeers)
	var ids [][]byte
	if err := peers.ForEachBucket(func(k []byte) error {
		ids = append(ids, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		if err := migratePeerV3(string(id), peers.Bucket(id)); err != nil {
			return err
		}
	}
	return nil
}

func migratePeerV3(id string, b *bolt.Bucket) error {
	out := b.Bucket(bucketOut)
	data := b.Get(keyPeerRecord)
	if out == nil || data == nil {
		return fmt.Errorf("peer %s: %w (record or log missing)", id, ErrCorrupt)
	}
	var rec PeerRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("peer %s record: %w: %v", id, ErrCorrupt, err)
	}
	if _, err := deleteRange(out, 0, rec.Acked); err != nil {
		return err
	}
	// One pass to count and find the last parked message.
	var last uint64
	c := out.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := decodeV2Out(id, k, v)
		if err != nil {
			return err
		}
		rec.OutLen, last = rec.OutLen+1, r.Seq
		if r.Parked {
			rec.ParkedTo = r.Seq
		}
	}
	// Then park the unparked messages before it (normally none).
	var fix []OutRecord
	for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < rec.ParkedTo; k, v = c.Next() {
		if r, _ := decodeV2Out(id, k, v); !r.Parked { // decoded above
			fix = append(fix, r)
		}
	}
	for _, r := range fix {
		r.Parked = true
		data, err := encodeOut(r)
		if err != nil {
			return err
		}
		if err := out.Put(seqKey(r.Seq), data); err != nil {
			return err
		}
	}
	rec.NextSeq = max(rec.NextSeq, last) // numbers are never reused
	rec.normalize()
	data, err := encodePeer(rec)
	if err != nil {
		return err
	}
	return b.Put(keyPeerRecord, data)
}

// decodeV2Out decodes a schema-2 outbound message.
func decodeV2Out(id string, k, v []byte) (OutRecord, error) {
	var r OutRecord
	if err := json.Unmarshal(v, &r); err != nil || len(k) != 8 {
		return r, fmt.Errorf("peer %s message %x: %w: %v", id, k, ErrCorrupt, err)
	}
	r.Seq = binary.BigEndian.Uint64(k)
	return r, nil
}
