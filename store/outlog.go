package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrParkedOrder: a parked message was appended after messages that are not
// parked (parked messages are always the front of a peer's log).
var ErrParkedOrder = errors.New("a parked message cannot follow unparked ones")

// OutRecord is one message in a peer's outbound log.
type OutRecord struct {
	Seq    uint64          `json:"-"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
	// Tag is the sender's opaque identifier of the message, kept with it
	// through parking, unparking and renumbering.
	Tag json.RawMessage `json:"tag,omitempty"`
	// Parked messages were handed back to the application in a give-up
	// and wait for it to resend or discard them; they are not sent.
	Parked bool      `json:"parked,omitempty"`
	At     time.Time `json:"at"`
}

// appendFill is the page fill of an outbound log (see AppendOut).
const appendFill = 0.95

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// AppendOut writes a message to the end of the peer's outbound log,
// assigning it the next sequence number, which it returns. Params and Tag
// are stored as given (the caller checks they are valid JSON). A parked message
// (r.Parked, as when a peer restart renumbers the log) may only follow
// parked ones: otherwise ErrParkedOrder.
func (t *Tx) AppendOut(id string, r OutRecord) (uint64, error) {
	rec, _, err := t.Peer(id)
	if err != nil {
		return 0, err
	}
	out, err := t.outBucket(id, true)
	if err != nil {
		return 0, err
	}
	if r.Parked {
		if k, _ := out.Cursor().Seek(seqKey(rec.SendFrom())); k != nil {
			return 0, fmt.Errorf("store: peer %s: %w (message %d is not parked)", id, ErrParkedOrder, binary.BigEndian.Uint64(k))
		}
	}
	rec.NextSeq++
	r.Seq = rec.NextSeq
	// Keys only ever grow at the end: fill pages instead of splitting them
	// in half (bbolt's default 0.5 leaves an appended log's pages half
	// empty, doubling the file).
	out.FillPercent = appendFill
	data, err := encodeOut(r)
	if err != nil {
		return 0, err
	}
	if err := out.Put(seqKey(r.Seq), data); err != nil {
		return 0, err
	}
	rec.OutLen++
	if r.Parked {
		rec.ParkedTo = r.Seq
	}
	return r.Seq, t.putPeer(id, rec)
}

// Out returns up to limit messages of the peer's log with seq ≥ from, in
// order (limit ≤ 0: all). It reads only the messages it returns, so
// Out(id, rec.SendFrom(), window) costs the window, not the backlog.
func (t *Tx) Out(id string, from uint64, limit int) ([]OutRecord, error) {
	return t.outRange(id, from, ^uint64(0), limit)
}

// outRange returns up to limit messages with from ≤ seq ≤ to.
func (t *Tx) outRange(id string, from, to uint64, limit int) ([]OutRecord, error) {
	b, err := t.outBucket(id, false)
	if b == nil || err != nil {
		return nil, err
	}
	var out []OutRecord
	c := b.Cursor()
	for k, v := c.Seek(seqKey(from)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k)
		if seq > to {
			break
		}
		r, err := decodeOut(v)
		if err != nil {
			return nil, fmt.Errorf("store: peer %s message %d: %w: %v", id, seq, ErrCorrupt, err)
		}
		r.Seq = seq
		out = append(out, r)
	}
	return out, nil
}

// Ack records that the peer acknowledged every message up to upTo
// (cumulative, clamped to the last assigned number) and deletes them from
// the log without decoding them. It returns how many it deleted; a stale or
// duplicate acknowledgement deletes nothing.
func (t *Tx) Ack(id string, upTo uint64) (int, error) {
	rec, ok, err := t.Peer(id)
	if err != nil || !ok || upTo <= rec.Acked {
		return 0, err
	}
	upTo = min(upTo, rec.NextSeq)
	b, err := t.outBucket(id, false)
	if err != nil {
		return 0, err
	}
	n := 0
	if b != nil {
		if n, err = deleteRange(b, rec.Acked+1, upTo); err != nil {
			return 0, err
		}
	}
	rec.Acked = upTo
	rec.OutLen -= min(rec.OutLen, uint64(n))
	return n, t.putPeer(id, rec)
}

// deleteRange deletes every key of b in [from, to] (8-byte big-endian
// numbers) with a cursor, without reading the values, and returns how many
// it deleted. After each delete the cursor seeks the key after the deleted
// one: Next after Delete skips a key once the page is being modified in the
// transaction (TestParkedBoundaryConsistent found it), and seeking from
// `from` again would walk every emptied leaf each time (quadratic).
func deleteRange(b *bolt.Bucket, from, to uint64) (int, error) {
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(seqKey(from)); k != nil; {
		seq := binary.BigEndian.Uint64(k)
		if seq > to {
			break
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
		n++
		if seq == ^uint64(0) {
			break
		}
		k, _ = c.Seek(seqKey(seq + 1))
	}
	return n, nil
}

// DeleteOut removes the given messages from the peer's log (numbers not in
// it are ignored).
func (t *Tx) DeleteOut(id string, seqs []uint64) error {
	rec, ok, err := t.Peer(id)
	if err != nil || !ok {
		return err
	}
	b, err := t.outBucket(id, false)
	if b == nil || err != nil {
		return err
	}
	for _, s := range seqs {
		k := seqKey(s)
		if b.Get(k) == nil {
			continue
		}
		if err := b.Delete(k); err != nil {
			return err
		}
		rec.OutLen -= min(rec.OutLen, 1)
	}
	return t.putPeer(id, rec)
}
