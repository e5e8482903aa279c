package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// OutRecord is one message in a peer's outbound log.
type OutRecord struct {
	Seq    uint64          `json:"-"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
	// Tag is the sender's opaque identifier of the message.
	Tag json.RawMessage `json:"tag,omitempty"`
	// Parked messages were handed back to the application in a give-up
	// and wait for it to resend or discard them; they are not sent.
	Parked bool      `json:"parked,omitempty"`
	At     time.Time `json:"at"`
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// AppendOut appends a message to the peer's outbound log, assigning it the
// next sequence number, which it returns.
func (t *Tx) AppendOut(id string, r OutRecord) (uint64, error) {
	rec, _, err := t.Peer(id)
	if err != nil {
		return 0, err
	}
	rec.NextSeq++
	r.Seq = rec.NextSeq
	b, err := t.peerBucket(id, true)
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	if err := b.Bucket(bucketOut).Put(seqKey(r.Seq), data); err != nil {
		return 0, err
	}
	return r.Seq, t.PutPeer(id, rec)
}

// Out returns up to limit messages of the peer's log with seq ≥ from, in
// order (limit ≤ 0: all).
func (t *Tx) Out(id string, from uint64, limit int) ([]OutRecord, error) {
	b, err := t.peerBucket(id, false)
	if b == nil || err != nil {
		return nil, err
	}
	var out []OutRecord
	c := b.Bucket(bucketOut).Cursor()
	for k, v := c.Seek(seqKey(from)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
		var r OutRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("store: peer %s message %d: %w: %v", id, binary.BigEndian.Uint64(k), ErrCorrupt, err)
		}
		r.Seq = binary.BigEndian.Uint64(k)
		out = append(out, r)
	}
	return out, nil
}

// Ack records that the peer acknowledged every message up to upTo
// (cumulative), deletes them from the log and returns them.
func (t *Tx) Ack(id string, upTo uint64) ([]OutRecord, error) {
	rec, ok, err := t.Peer(id)
	if err != nil || !ok || upTo <= rec.Acked {
		return nil, err
	}
	upTo = min(upTo, rec.NextSeq)
	acked, err := t.Out(id, rec.Acked+1, int(upTo-rec.Acked))
	if err != nil {
		return nil, err
	}
	b, _ := t.peerBucket(id, false)
	out := b.Bucket(bucketOut)
	var deleted []OutRecord
	for _, r := range acked {
		if r.Seq > upTo {
			break
		}
		if err := out.Delete(seqKey(r.Seq)); err != nil {
			return nil, err
		}
		deleted = append(deleted, r)
	}
	rec.Acked = upTo
	return deleted, t.PutPeer(id, rec)
}

// DeleteOut removes the given messages from the peer's log.
func (t *Tx) DeleteOut(id string, seqs []uint64) error {
	b, err := t.peerBucket(id, false)
	if b == nil || err != nil {
		return err
	}
	for _, s := range seqs {
		if err := b.Bucket(bucketOut).Delete(seqKey(s)); err != nil {
			return err
		}
	}
	return nil
}
