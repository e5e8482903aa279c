package store

import (
	"errors"
	"fmt"
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
	// Legacy is true when the peer's last channel lacked ocapnet's close
	// feature (a JavaScript kernel): after a restart the node gives such a
	// peer, if it was active shortly before, a fresh channel itself
	// (docs/PROTOCOL.md "Living with the JavaScript transport").
	Legacy bool `json:"legacy,omitempty"`

	// The fields below are kept by the store from the outbound log (schema
	// 3); PutPeer ignores the values it is given for them.

	// ParkedTo is the parked boundary: the stored messages numbered
	// Acked+1..ParkedTo are parked and every later one is not (0: none
	// parked). Parked messages are always the front of the log.
	ParkedTo uint64 `json:"parkedTo,omitempty"`
	// OutLen is how many messages the outbound log holds: every
	// unacknowledged message, parked ones included.
	OutLen uint64 `json:"outLen,omitempty"`
}

// ParkedRange returns the numbers of the parked messages, from..to (from >
// to: none), without reading the log.
func (r PeerRecord) ParkedRange() (from, to uint64) {
	return r.Acked + 1, max(r.Acked, r.ParkedTo)
}

// SendFrom returns the number of the first message that is neither
// acknowledged nor parked: the log from there on is what there is to send.
func (r PeerRecord) SendFrom() uint64 { return max(r.Acked, r.ParkedTo) + 1 }

// normalize keeps the parked boundary within the numbers in use, after a
// caller moved Acked or reset NextSeq (a peer restart).
func (r *PeerRecord) normalize() {
	r.ParkedTo = min(r.ParkedTo, r.NextSeq)
	if r.ParkedTo <= r.Acked {
		r.ParkedTo = 0
	}
}

// peerBucket returns the peer's bucket (nil if none and !create).
func (t *Tx) peerBucket(id string, create bool) (*bolt.Bucket, error) {
	peers := t.tx.Bucket(bucketPeers)
	if b := peers.Bucket([]byte(id)); b != nil || !create {
		return b, nil
	}
	return peers.CreateBucket([]byte(id))
}

// outBucket returns the peer's outbound log, creating it (and the peer's
// bucket) if create. Without create it is nil if the peer has never had a
// message appended. The log is created by the first append only: a peer
// bucket without a sub-bucket is small enough for bbolt to keep inline in
// its parent's page, so a peer that only ever sent to us (every identity of
// a flood that delivered a message) costs about its record on disk, not a
// 4 KiB page of its own.
func (t *Tx) outBucket(id string, create bool) (*bolt.Bucket, error) {
	b, err := t.peerBucket(id, create)
	if b == nil || err != nil {
		return nil, err
	}
	if out := b.Bucket(bucketOut); out != nil || !create {
		return out, nil
	}
	return b.CreateBucket(bucketOut)
}

// Peer returns a peer's record.
func (t *Tx) Peer(id string) (PeerRecord, bool, error) {
	if r, ok := t.peers[id]; ok {
		if r == nil {
			return PeerRecord{}, false, nil
		}
		return *r, true, nil
	}
	b, err := t.peerBucket(id, false)
	if b == nil || err != nil {
		return PeerRecord{}, false, err
	}
	r, ok, err := getPeer(id, b)
	if err != nil {
		return r, false, err
	}
	t.cache(id, r, ok)
	return r, ok, nil
}

// getPeer decodes the record in a peer's bucket.
func getPeer(id string, b *bolt.Bucket) (PeerRecord, bool, error) {
	var r PeerRecord
	data := b.Get(keyPeerRecord)
	if data == nil {
		return r, false, nil
	}
	if err := decodePeer(data, &r); err != nil {
		return r, false, fmt.Errorf("store: peer %s record: %w: %v", id, ErrCorrupt, err)
	}
	return r, true, nil
}

func (t *Tx) cache(id string, r PeerRecord, ok bool) {
	if t.peers == nil {
		t.peers = map[string]*PeerRecord{}
	}
	if ok {
		t.peers[id] = &r
	} else {
		t.peers[id] = nil
	}
}

// PutPeer stores a peer's record. The store keeps ParkedTo and OutLen
// itself: the values in r are ignored.
func (t *Tx) PutPeer(id string, r PeerRecord) error {
	cur, _, err := t.Peer(id)
	if err != nil {
		return err
	}
	r.ParkedTo, r.OutLen = cur.ParkedTo, cur.OutLen
	return t.putPeer(id, r)
}

// putPeer stores r as it is (after normalize), to be written at commit.
func (t *Tx) putPeer(id string, r PeerRecord) error {
	if _, err := t.peerBucket(id, true); err != nil {
		return err
	}
	r.normalize()
	t.cache(id, r, true)
	if t.dirty == nil {
		t.dirty = map[string]bool{}
	}
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

// ForEachPeer calls fn with every stored peer's record, in ID order,
// without reading their logs: one record lookup per peer. It stops at fn's
// first error and returns it. fn may PutPeer the peer it is given but must
// not add or forget peers.
func (t *Tx) ForEachPeer(fn func(id string, r PeerRecord) error) error {
	peers := t.tx.Bucket(bucketPeers)
	return peers.ForEachBucket(func(k []byte) error {
		id := string(k)
		r, ok := t.peers[id]
		if !ok {
			rec, found, err := getPeer(id, peers.Bucket(k))
			if err != nil {
				return err
			}
			r = &rec
			if !found {
				r = nil
			}
		}
		if r == nil {
			return nil
		}
		return fn(id, *r)
	})
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
