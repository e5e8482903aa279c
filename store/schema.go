package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout version this code reads and writes.
const SchemaVersion = 4

// The file's layout (schema 4). Keys of logs are 8-byte big-endian numbers.
//
//	meta/                 application "ocapnet", schema (8-byte version),
//	                      identity, lastActive, relays (JSON)
//	peers/<peer ID>/      record: PeerRecord (JSON)
//	peers/<peer ID>/out/  <seq>: OutRecord without Seq (binary; JSON if
//	                      written by schema ≤ 2: see encoding.go); created
//	                      by the first append (a peer without it is small
//	                      enough to be kept inline)
//	events/               <id>: the daemon's event, as given
//	kv/<namespace>/       <key>: value, opaque to the store (schema 4; kv.go)
var (
	bucketMeta  = []byte("meta")
	bucketPeers = []byte("peers")
	bucketOut   = []byte("out")
	// bucketEvents is the peer daemon's durable event log (schema 2).
	bucketEvents = []byte("events")
	// bucketKV holds the namespaces of layers above the node (schema 4).
	bucketKV = []byte("kv")

	keySchema      = []byte("schema")
	keyApplication = []byte("application")
	appName        = []byte("ocapnet")

	keyIdentity   = []byte("identity")
	keyLastActive = []byte("lastActive")
	keyRelays     = []byte("relays")
	keyPeerRecord = []byte("record")
)

// migrations[v] upgrades a database from schema version v to v+1, in the
// transaction that then records the new version. Version 0 is an empty (new)
// file; 1 had no event log; 2 kept no parked boundary or log length in the
// peer record; 3 had no KV area.
var migrations = []func(*bolt.Tx) error{
	0: func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPeers} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	},
	1: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketEvents)
		return err
	},
	2: migrateV3,
	3: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketKV)
		return err
	},
}

// migrate checks the file is ours and brings it to SchemaVersion.
func migrate(db *bolt.DB, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: %s: %w (%v)", path, ErrCorrupt, r)
		}
	}()
	return db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("store: %s: %w (no ocapnet metadata)", path, ErrForeign)
			}
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keyApplication, appName); err != nil {
				return err
			}
		} else if string(meta.Get(keyApplication)) != string(appName) {
			return fmt.Errorf("store: %s: %w (application %q)", path, ErrForeign, meta.Get(keyApplication))
		}
		version := uint64(0)
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("store: %s: %w (bad schema version)", path, ErrCorrupt)
			}
			version = binary.BigEndian.Uint64(v)
		}
		if version > SchemaVersion {
			return fmt.Errorf("store: %s: %w (schema %d, this build reads up to %d)", path, ErrTooNew, version, SchemaVersion)
		}
		for ; version < SchemaVersion; version++ {
			if err := migrations[version](tx); err != nil {
				return fmt.Errorf("store: migrating %s from schema %d: %w", path, version, err)
			}
		}
		return meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion))
	})
}
