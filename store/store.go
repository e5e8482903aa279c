// Package store keeps ocapnet's durable state in one bbolt file in a data
// directory: the node's identity and incarnation, the relay pool, and per
// peer the location hints, the outbound log with its sequence state, the
// inbound delivery state and the last seen incarnation.
//
// Where things are: the group commit (Update) is in commit.go, the file
// layout and its migrations in schema.go, and each kind of record in its own
// file: identity.go, lastactive.go, peer.go (PeerRecord), outlog.go (the
// outbound log: AppendOut writes an outbound message, Ack deletes
// acknowledged ones), parked.go (give-ups: ParkOut, UnparkOut,
// DiscardParked), relaypool.go, events.go (the daemon's event log), and
// encoding.go (how records are encoded).
//
// # Durability
//
// Writes go through Update, which group-commits: one writer goroutine runs
// every queued update of every caller in one bbolt transaction, so a burst
// of concurrent writers shares one commit instead of paying one each. A
// bbolt commit writes the changed pages and fdatasyncs the file, then writes
// the meta page and fdatasyncs again (and fsyncs when the file grows). The
// contract:
//
//   - Update returns nil only after its changes are on disk: a crash (kill
//     -9, power loss) after that loses nothing it wrote.
//   - A batch commits atomically: after a crash, an Update that had not
//     returned is either entirely applied, with the rest of its batch, or
//     not at all. Nothing half-written is ever read back.
//   - An Update that returns an error applied nothing. If its function
//     failed or panicked, the rest of its batch committed without it; if
//     the commit failed (ErrStorage: disk full, I/O error), the whole batch
//     applied nothing, and everything committed before is intact.
//   - Open's migration, AppendEvent and TrimEvents commit the same way. View
//     never writes. Close waits for queued updates to commit.
//
// This assumes a disk that honours fdatasync (no volatile write cache that
// lies about flushes).
//
// One process at a time may open a data directory: a second Open gets
// ErrLocked naming the directory. A file that is not an ocapnet database
// gets ErrForeign or ErrCorrupt, never a panic, and so does a damaged record
// when it is read.
//
// Test binaries built with the tag ocapnet_nosync skip every fsync (to show
// that the power-loss test in package node detects the loss); any other
// binary with that tag panics at start.
package store

import (
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
	// ErrInvalidOptions: Open was given options that make no sense.
	ErrInvalidOptions = errors.New("invalid store options")
)

// Options configures Open. A zero field means its default; a negative one
// is refused with ErrInvalidOptions.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the directory. Default 200 ms.
	LockTimeout time.Duration
	// MaxBatch caps the updates committed in one transaction. Default 1024.
	MaxBatch int
	// NoLinger turns off the group commit's short wait for the callers the
	// last commit woke (see commitLoop in commit.go). Default false.
	NoLinger bool
}

// withDefaults validates o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.LockTimeout < 0 {
		return o, fmt.Errorf("store: %w: LockTimeout %v < 0", ErrInvalidOptions, o.LockTimeout)
	}
	if o.MaxBatch < 0 {
		return o, fmt.Errorf("store: %w: MaxBatch %d < 0", ErrInvalidOptions, o.MaxBatch)
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 200 * time.Millisecond
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 1024
	}
	return o, nil
}

// Store is an open data directory.
type Store struct {
	db   *bolt.DB
	dir  string
	opts Options

	mu      sync.Mutex // guards pending, closed and broken
	pending []*update  // queued updates, in arrival order
	closed  bool
	broken  error // set when an UpdateAsync failed: every later update gets it

	wake chan struct{} // cap 1: tells commitLoop there is work or a close
	done chan struct{} // closed when commitLoop has returned

	stats commitStats
}

// Open opens (creating if needed) the database in dir, creating dir with
// mode 0700 if it does not exist.
func Open(dir string, opts Options) (s *Store, err error) {
	if opts, err = opts.withDefaults(); err != nil {
		return nil, err
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

// View runs fn in a read-only transaction, on the caller's goroutine (a
// panic in fn is the caller's own). Views run concurrently with each other
// and with the commit.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx}) })
}
