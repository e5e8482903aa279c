package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

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

// encodeOut encodes an outbound message (its Seq is the key, not stored).
func encodeOut(r OutRecord) ([]byte, error) { return json.Marshal(r) }

// decodeOut decodes an outbound message; the caller sets Seq from the key.
func decodeOut(data []byte) (OutRecord, error) {
	var r OutRecord
	err := json.Unmarshal(data, &r)
	return r, err
}

func encodePeer(r PeerRecord) ([]byte, error) { return json.Marshal(r) }

func decodePeer(data []byte, r *PeerRecord) error { return json.Unmarshal(data, r) }
