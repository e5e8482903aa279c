package store

import (
	bolt "go.etcd.io/bbolt"
)

// Tx is a transaction, read-only in View and read-write in Update.
//
// Peer records are cached for the transaction and written once at commit,
// so a batch of appends to one peer encodes its record once, not once per
// message.
type Tx struct {
	tx    *bolt.Tx
	peers map[string]*PeerRecord // cached records; nil entry: none stored
	dirty map[string]bool
}

// flush writes the records changed in this transaction.
func (t *Tx) flush() error {
	for id := range t.dirty {
		b, err := t.peerBucket(id, false)
		if err != nil {
			return err
		}
		if b == nil {
			continue // forgotten after the change
		}
		data, err := encodePeer(*t.peers[id])
		if err != nil {
			return err
		}
		if err := b.Put(keyPeerRecord, data); err != nil {
			return err
		}
	}
	t.dirty = nil
	return nil
}
