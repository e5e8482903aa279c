// Package store keeps ocapnet's durable state in one bbolt file in a data
// directory: the node's identity and incarnation, the relay pool, and per
// peer the location hints, the outbound log with its sequence state, the
// inbound delivery state and the last seen incarnation.
//
// Writes go through Update, which group-commits: one writer goroutine runs
// every queued update of every caller in one bbolt transaction, so a burst of
// concurrent writers shares one pair of fdatasyncs instead of paying one
// each. Update returns only once its changes are durable.
//
// One process at a time may open a data directory: a second Open gets
// ErrLocked naming the directory. A file that is not an ocapnet database
// gets ErrForeign or ErrCorrupt, never a panic.
//
// Test binaries built with the tag ocapnet_nosync skip every fsync (to show
// that the power-loss test in package node detects the loss); any other
// binary with that tag panics at start.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the database file inside the data directory.
const FileName = "ocapnet.db"

// SchemaVersion is the layout version this code reads and writes.
const SchemaVersion = 2

var (
	// ErrLocked: another process has the data directory open.
	ErrLocked = errors.New("data directory in use by another process")
	// ErrCorrupt: the database file is damaged or not a bbolt file.
	ErrCorrupt = errors.New("database file is corrupt or not a database")
	// ErrForeign: the file is a bbolt database of another application.
	ErrForeign = errors.New("database file belongs to another application")
	// ErrTooNew: the file was written by a newer ocapnet.
	ErrTooNew = errors.New("database file is from a newer version of ocapnet")
	// ErrStorage: a write could not be made durable (disk full, I/O
	// error). Nothing committed before is lost.
	ErrStorage = errors.New("storage write failed")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
)

var (
	bucketMeta  = []byte("meta")
	bucketPeers = []byte("peers")
	bucketOut   = []byte("out")
	// bucketEvents is the peer daemon's durable event log (schema 2).
	bucketEvents = []byte("events")

	keySchema      = []byte("schema")
	keyApplication = []byte("application")
	appName        = []byte("ocapnet")
)

// Options configures Open. The zero value uses the defaults.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the directory. Default 200 ms.
	LockTimeout time.Duration
	// MaxBatch caps the updates committed in one transaction. Default 1024.
	MaxBatch int
}

// Store is an open data directory.
type Store struct {
	db   *bolt.DB
	dir  string
	opts Options

	mu      sync.Mutex
	pending []*update
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

type update struct {
	fn   func(*Tx) error
	err  error
	done chan struct{}
}

// migrations[v] upgrades a database from schema version v to v+1. Version 0
// is an empty (new) file.
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
}

// Open opens (creating if needed) the database in dir, creating dir with
// mode 0700 if it does not exist.
func Open(dir string, opts Options) (s *Store, err error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 200 * time.Millisecond
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	var db *bolt.DB
	func() {
		// bbolt panics on some kinds of damage; turn that into an error.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("store: %s: %w (%v)", path, ErrCorrupt, r)
			}
		}()
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	}()
	if err != nil {
		switch {
		case errors.Is(err, ErrCorrupt):
			return nil, err
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("store: data directory %s: %w", dir, ErrLocked)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return nil, fmt.Errorf("store: %s: %w: %v", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	if err := opened(db, dir, path); err != nil {
		db.Close()
		return nil, err
	}
	s = &Store{db: db, dir: dir, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.commitLoop()
	return s, nil
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

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Close waits for pending updates to commit and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
	return s.db.Close()
}

// Update runs fn in a read-write transaction shared with other concurrent
// updates (group commit) and returns once the transaction is durable. If fn
// returns an error, its changes are discarded and the others still commit.
// fn may run more than once (when another update in its batch fails) and
// must only communicate through its return value and variables it resets on
// each run.
func (s *Store) Update(fn func(*Tx) error) error {
	u := &update{fn: fn, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.pending = append(s.pending, u)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-u.done
	return u.err
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx}) })
}

// commitLoop is the single writer: it commits everything queued in one
// transaction, then the next batch. While a commit runs, new updates queue
// up, so batches grow with load and there is no added delay when idle.
func (s *Store) commitLoop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		if len(s.pending) == 0 {
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			<-s.wake
			continue
		}
		n := min(len(s.pending), s.opts.MaxBatch)
		batch := s.pending[:n:n]
		s.pending = s.pending[n:]
		s.mu.Unlock()
		s.commit(batch)
	}
}

// commit commits batch; an update whose fn fails is taken out and the rest
// is retried, as bbolt's DB.Batch does.
func (s *Store) commit(batch []*update) {
	for len(batch) > 0 {
		failed := -1
		err := s.db.Update(func(btx *bolt.Tx) error {
			tx := &Tx{tx: btx}
			for i, u := range batch {
				if err := u.fn(tx); err != nil {
					failed, u.err = i, err
					return err
				}
			}
			return tx.flush()
		})
		if failed >= 0 {
			close(batch[failed].done)
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrStorage, err)
		}
		for _, u := range batch {
			u.err = err
			close(u.done)
		}
		return
	}
}
