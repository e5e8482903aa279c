package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Records of the meta bucket, the relay pool and peer records are JSON.
// Outbound messages, which are written and read at the message rate, have
// a compact binary layout since schema 3 (a JSON encoding took ~10 % of the
// CPU of a high-rate append+ack load, see docs/STORE.md); messages written
// as JSON by schema ≤ 2 are still read, so the upgrade rewrites none:
//
//	JSON:     {"method":...,"params":...,"tag":...,"parked":...,"at":...}
//	binary:   0x01, flags (bit 0 parked, bit 1 has at), [at: 8-byte
//	          big-endian Unix nanoseconds], then method, params and tag,
//	          each as a uvarint length and its bytes.
//
// A message whose At cannot be held in Unix nanoseconds (before 1678 or
// after 2262) is written as JSON.
const (
	outBinary    = 0x01
	flagParked   = 1 << 0
	flagHasAt    = 1 << 1
	knownOutFlag = flagParked | flagHasAt
)

var (
	minUnixNano = time.Unix(0, math.MinInt64)
	maxUnixNano = time.Unix(0, math.MaxInt64)
)

// encodeOut encodes an outbound message (its Seq is the key, not stored).
func encodeOut(r OutRecord) ([]byte, error) {
	if !r.At.IsZero() && (r.At.Before(minUnixNano) || r.At.After(maxUnixNano)) {
		return json.Marshal(r)
	}
	buf := make([]byte, 0, 2+8+3*binary.MaxVarintLen32+len(r.Method)+len(r.Params)+len(r.Tag))
	flags := byte(0)
	if r.Parked {
		flags |= flagParked
	}
	if !r.At.IsZero() {
		flags |= flagHasAt
	}
	buf = append(buf, outBinary, flags)
	if !r.At.IsZero() {
		buf = binary.BigEndian.AppendUint64(buf, uint64(r.At.UnixNano()))
	}
	for _, f := range [][]byte{[]byte(r.Method), r.Params, r.Tag} {
		buf = binary.AppendUvarint(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	return buf, nil
}

var errShort = errors.New("binary message truncated")

// decodeOut decodes an outbound message of either layout; the caller sets
// Seq from the key. The result does not alias data (bbolt's memory).
func decodeOut(data []byte) (OutRecord, error) {
	var r OutRecord
	if len(data) == 0 || data[0] != outBinary {
		err := json.Unmarshal(data, &r)
		return r, err
	}
	if len(data) < 2 {
		return r, errShort
	}
	flags, p := data[1], data[2:]
	if flags&^knownOutFlag != 0 {
		return r, fmt.Errorf("unknown message flags %#x", flags)
	}
	r.Parked = flags&flagParked != 0
	if flags&flagHasAt != 0 {
		if len(p) < 8 {
			return r, errShort
		}
		r.At = time.Unix(0, int64(binary.BigEndian.Uint64(p))).UTC()
		p = p[8:]
	}
	var fields [3][]byte
	var tmp [binary.MaxVarintLen64]byte
	for i := range fields {
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			return r, errShort
		}
		if binary.PutUvarint(tmp[:], n) != w {
			return r, errors.New("non-minimal length in a binary message")
		}
		if n > 0 {
			fields[i] = append([]byte(nil), p[w:w+int(n)]...)
		}
		p = p[w+int(n):]
	}
	if len(p) != 0 {
		return r, fmt.Errorf("%d bytes after the message", len(p))
	}
	r.Method, r.Params, r.Tag = string(fields[0]), fields[1], fields[2]
	return r, nil
}

func encodePeer(r PeerRecord) ([]byte, error) { return json.Marshal(r) }

func decodePeer(data []byte, r *PeerRecord) error { return json.Unmarshal(data, r) }

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("store: %s: %w: %v", key, ErrCorrupt, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}
