package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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
		if err := putJSON(b, keyPeerRecord, *t.peers[id]); err != nil {
			return err
		}
	}
	t.dirty = nil
	return nil
}

var (
	keyIdentity   = []byte("identity")
	keyLastActive = []byte("lastActive")
	keyRelays     = []byte("relays")
	keyPeerRecord = []byte("record")
)

// Identity is the node's persistent identity.
type Identity struct {
	KeySeed       string `json:"keySeed"` // 64 hex digits
	PeerID        string `json:"peerId"`
	IncarnationID string `json:"incarnationId"`
}

// Identity returns the stored identity, if any.
func (t *Tx) Identity() (Identity, bool, error) {
	var id Identity
	ok, err := getJSON(t.tx.Bucket(bucketMeta), keyIdentity, &id)
	return id, ok, err
}

// SetIdentity stores the identity. It refuses to replace a different one.
func (t *Tx) SetIdentity(id Identity) error {
	old, ok, err := t.Identity()
	if err != nil {
		return err
	}
	if ok && old != id {
		return fmt.Errorf("store: an identity (%s) is already stored", old.PeerID)
	}
	return putJSON(t.tx.Bucket(bucketMeta), keyIdentity, id)
}

// LastActive returns the last recorded activity time (zero if none).
func (t *Tx) LastActive() (time.Time, error) {
	var at time.Time
	_, err := getJSON(t.tx.Bucket(bucketMeta), keyLastActive, &at)
	return at, err
}

// SetLastActive records the activity time.
func (t *Tx) SetLastActive(at time.Time) error {
	return putJSON(t.tx.Bucket(bucketMeta), keyLastActive, at.Round(0).UTC())
}

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

// RelayEntry is one relay of the pool (reference §4.5).
type RelayEntry struct {
	Addr        string    `json:"addr"`
	LastSeen    time.Time `json:"lastSeen"`
	IsBootstrap bool      `json:"isBootstrap"`
}

// Relays returns the relay pool.
func (t *Tx) Relays() ([]RelayEntry, error) {
	var pool []RelayEntry
	_, err := getJSON(t.tx.Bucket(bucketMeta), keyRelays, &pool)
	return pool, err
}

// SetBootstrapRelays applies upstream's rule for configured relays: each
// becomes a bootstrap entry seen now; stored bootstrap entries not in the
// list lose the flag; then the pool is capped. An empty list leaves the pool
// untouched.
func (t *Tx) SetBootstrapRelays(addrs []string, now time.Time, maxKnown int) error {
	if len(addrs) == 0 {
		return nil
	}
	pool, err := t.Relays()
	if err != nil {
		return err
	}
	for i := range pool {
		pool[i].IsBootstrap = false
	}
	for _, a := range addrs {
		if i := slices.IndexFunc(pool, func(e RelayEntry) bool { return e.Addr == a }); i >= 0 {
			pool[i].IsBootstrap, pool[i].LastSeen = true, now
		} else {
			pool = append(pool, RelayEntry{Addr: a, LastSeen: now, IsBootstrap: true})
		}
	}
	return putJSON(t.tx.Bucket(bucketMeta), keyRelays, capPool(pool, maxKnown))
}

// AddKnownRelays adds learned relays (or refreshes their lastSeen), then
// caps the pool.
func (t *Tx) AddKnownRelays(addrs []string, now time.Time, maxKnown int) error {
	pool, err := t.Relays()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if i := slices.IndexFunc(pool, func(e RelayEntry) bool { return e.Addr == a }); i >= 0 {
			pool[i].LastSeen = now
		} else {
			pool = append(pool, RelayEntry{Addr: a, LastSeen: now})
		}
	}
	return putJSON(t.tx.Bucket(bucketMeta), keyRelays, capPool(pool, maxKnown))
}

// capPool keeps bootstrap entries first (in stored order), then learned
// entries by lastSeen, newest first, and truncates to maxKnown (default 20).
func capPool(pool []RelayEntry, maxKnown int) []RelayEntry {
	if maxKnown <= 0 {
		maxKnown = 20
	}
	var boot, learned []RelayEntry
	for _, e := range pool {
		if e.IsBootstrap {
			boot = append(boot, e)
		} else {
			learned = append(learned, e)
		}
	}
	sort.SliceStable(learned, func(i, j int) bool { return learned[i].LastSeen.After(learned[j].LastSeen) })
	out := append(boot, learned...)
	if len(out) > maxKnown {
		out = out[:maxKnown]
	}
	return out
}

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
