package store

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// PeerRecord is the persistent state of one peer relationship.
type PeerRecord struct {
	// Hints are the peer's location hints (multiaddrs).
	Hints []string `json:"hints,omitempty"`
	// Incarnation is the peer's incarnation ID from its last handshake.
	Incarnation string `json:"incarnation,omitempty"`
	// NextSeq is the last outbound sequence number assigned (0: none).
	NextSeq uint64 `json:"nextSeq"`
	// Acked is the highest outbound sequence number the peer acknowledged.
	Acked uint64 `json:"acked"`
	// Delivered is the highest inbound sequence number handed to the
	// application and recorded as such.
	Delivered uint64 `json:"delivered"`
	// Intent is the highest inbound sequence number that may have been
	// handed to the application (≥ Delivered); after a crash, messages in
	// (Delivered, Intent] are delivered again, marked as redeliveries.
	Intent uint64 `json:"intent"`
	// FailedSince is when the transport reported the peer failed (zero if
	// not failed).
	FailedSince time.Time `json:"failedSince,omitzero"`
	// LastActive is the last time anything was exchanged with the peer.
	LastActive time.Time `json:"lastActive,omitzero"`
}

func (t *Tx) peerBucket(id string, create bool) (*bolt.Bucket, error) {
	peers := t.tx.Bucket(bucketPeers)
	if b := peers.Bucket([]byte(id)); b != nil || !create {
		return b, nil
	}
	b, err := peers.CreateBucket([]byte(id))
	if err != nil {
		return nil, err
	}
	if _, err := b.CreateBucket(bucketOut); err != nil {
		return nil, err
	}
	return b, nil
}

// Peer returns a peer's record.
func (t *Tx) Peer(id string) (PeerRecord, bool, error) {
	if r, ok := t.peers[id]; ok {
		if r == nil {
			return PeerRecord{}, false, nil
		}
		return *r, true, nil
	}
	var r PeerRecord
	b, err := t.peerBucket(id, false)
	if b == nil || err != nil {
		return r, false, err
	}
	ok, err := getJSON(b, keyPeerRecord, &r)
	if err != nil {
		return r, false, err
	}
	if t.peers == nil {
		t.peers = map[string]*PeerRecord{}
	}
	if ok {
		c := r
		t.peers[id] = &c
	} else {
		t.peers[id] = nil
	}
	return r, ok, nil
}

// PutPeer stores a peer's record.
func (t *Tx) PutPeer(id string, r PeerRecord) error {
	if _, err := t.peerBucket(id, true); err != nil {
		return err
	}
	if t.peers == nil {
		t.peers, t.dirty = map[string]*PeerRecord{}, map[string]bool{}
	}
	if t.dirty == nil {
		t.dirty = map[string]bool{}
	}
	t.peers[id] = &r
	t.dirty[id] = true
	return nil
}

// PeerIDs lists every stored peer.
func (t *Tx) PeerIDs() ([]string, error) {
	var ids []string
	err := t.tx.Bucket(bucketPeers).ForEachBucket(func(k []byte) error {
		ids = append(ids, string(k))
		return nil
	})
	return ids, err
}

// ForgetPeer deletes everything stored about a peer.
func (t *Tx) ForgetPeer(id string) error {
	delete(t.peers, id)
	delete(t.dirty, id)
	err := t.tx.Bucket(bucketPeers).DeleteBucket([]byte(id))
	if errors.Is(err, berrors.ErrBucketNotFound) {
		return nil
	}
	return err
}
