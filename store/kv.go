package store

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ErrBadNamespace: a KV namespace name is empty or too long.
var ErrBadNamespace = errors.New("store: bad KV namespace")

// The KV area (schema 4) is for layers above the node that keep their own
// durable state next to the node's, such as package endpoint's per-peer
// export and import tables: kv/<namespace>/<key> = value. Keys and values
// are opaque bytes; the store orders keys bytewise.

func (t *Tx) kvBucket(ns string, create bool) (*bolt.Bucket, error) {
	if ns == "" || len(ns) > 64 {
		return nil, fmt.Errorf("%w: %q", ErrBadNamespace, ns)
	}
	kv := t.tx.Bucket(bucketKV)
	if kv == nil {
		return nil, fmt.Errorf("store: %w (no kv bucket)", ErrCorrupt)
	}
	if b := kv.Bucket([]byte(ns)); b != nil || !create {
		return b, nil
	}
	return kv.CreateBucket([]byte(ns))
}

// KVGet returns a copy of the value of key in namespace ns, or nil if there
// is none.
func (t *Tx) KVGet(ns string, key []byte) ([]byte, error) {
	b, err := t.kvBucket(ns, false)
	if err != nil || b == nil {
		return nil, err
	}
	if v := b.Get(key); v != nil {
		return bytes.Clone(v), nil
	}
	return nil, nil
}

// KVPut sets key to value in namespace ns (created on first use). Only in
// Update.
func (t *Tx) KVPut(ns string, key, value []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("store: empty KV key in %q", ns)
	}
	b, err := t.kvBucket(ns, true)
	if err != nil {
		return err
	}
	return b.Put(key, value)
}

// KVDelete removes key from namespace ns; a missing key is not an error.
func (t *Tx) KVDelete(ns string, key []byte) error {
	b, err := t.kvBucket(ns, false)
	if err != nil || b == nil {
		return err
	}
	return b.Delete(key)
}

// KVScan calls fn for every key of namespace ns that starts with prefix, in
// key order, until fn returns an error (which KVScan returns). fn's slices
// are valid only during the call and fn must not change the namespace.
func (t *Tx) KVScan(ns string, prefix []byte, fn func(key, value []byte) error) error {
	b, err := t.kvBucket(ns, false)
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// KVDeletePrefix removes every key of namespace ns that starts with prefix
// and returns how many it removed.
func (t *Tx) KVDeletePrefix(ns string, prefix []byte) (int, error) {
	b, err := t.kvBucket(ns, false)
	if err != nil || b == nil {
		return 0, err
	}
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}
