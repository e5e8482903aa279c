package store

import (
	"errors"
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// ErrUpdatePanicked: the function given to Update panicked. The error is a
// *PanicError carrying the panic value and stack; the update's changes were
// discarded and the other updates of its batch committed.
var ErrUpdatePanicked = errors.New("update panicked")

// PanicError is the error of an update whose function panicked (or, wrapped
// in ErrStorage, of a whole batch whose commit panicked inside bbolt).
// errors.Is(err, ErrUpdatePanicked) holds, and so does errors.Is(err, e)
// for an error e the function panicked with.
type PanicError struct {
	Value any    // what the function panicked with
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("store: %v: %v\n%s", ErrUpdatePanicked, e.Value, e.Stack)
}

// Unwrap returns ErrUpdatePanicked and, if the panic value is an error, it.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrUpdatePanicked, err}
	}
	return []error{ErrUpdatePanicked}
}

// update is one caller's queued Update.
type update struct {
	fn   func(*Tx) error
	err  error         // the result, set before done is closed
	done chan struct{} // closed once the update committed or failed
}

// Update runs fn in a read-write transaction shared with other concurrent
// updates (group commit) and returns once the transaction is durable (its
// commit was fsync'd). If fn returns an error or panics, its changes are
// discarded, Update returns that error (a panic as a *PanicError wrapping
// ErrUpdatePanicked), and the other updates of the batch still commit. If
// the commit itself fails, every update of the batch gets an error wrapping
// ErrStorage and none of them is applied.
//
// fn may run more than once (when another update in its batch fails) and
// must only communicate through its return value and variables it resets on
// each run. fn must not call Update or View of the same Store.
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

// commit commits batch in order; an update whose fn fails (or panics) is
// taken out with its error and the rest is retried, as bbolt's DB.Batch
// does. Unlike DB.Batch the failed fn is not run again on its own: its
// error is already its own.
func (s *Store) commit(batch []*update) {
	for len(batch) > 0 {
		failed := -1
		err := safely(func() error {
			return s.db.Update(func(btx *bolt.Tx) error {
				tx := &Tx{tx: btx}
				for i, u := range batch {
					if err := safely(func() error { return u.fn(tx) }); err != nil {
						failed, u.err = i, err
						return err
					}
				}
				return tx.flush()
			})
		})
		if failed >= 0 {
			close(batch[failed].done)
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrStorage, err)
		}
		for _, u := range batch {
			u.err = err
			close(u.done)
		}
		return
	}
}

// safely calls f, turning a panic into a *PanicError (bbolt's safelyCall).
// bbolt rolls its transaction back while the panic unwinds through
// DB.Update, so recovering here leaves the database usable.
func safely(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return f()
}
