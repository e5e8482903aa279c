package store

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

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
	done chan struct{} // closed once the update committed or failed (nil: async)
	// async: nobody waits for it; then is called with the result instead.
	then func(error)
}

// finish reports u's result.
func (u *update) finish(err error) {
	u.err = err
	if u.then != nil {
		u.then(err)
		return
	}
	close(u.done)
}

// ErrAsyncLost: an update queued with UpdateAsync failed, so the store
// refuses every later update (see UpdateAsync).
var ErrAsyncLost = errors.New("an asynchronous update failed; the store refuses later updates until it is reopened")

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
	if err := s.queue(u); err != nil {
		return err
	}
	<-u.done
	return u.err
}

// UpdateAsync queues fn like Update but returns at once; then is called
// with its result (from the store's commit goroutine: it must not block
// nor call Update) once the transaction holding it is durable or failed.
//
// Updates commit in the order they are queued: one queued after fn (by any
// caller, with Update or UpdateAsync) is in the same transaction or a
// later one. So a caller that queues fn and then lets a dependent fact be
// written (a delivery position, say) knows the fact is never durable
// without fn. To keep that true when fn fails (its function returns an
// error, or its transaction fails), the store then refuses every later
// update with an error wrapping ErrStorage and ErrAsyncLost, until it is
// closed and opened again.
func (s *Store) UpdateAsync(fn func(*Tx) error, then func(error)) {
	u := &update{fn: fn, then: then}
	if err := s.queue(u); err != nil {
		then(err)
	}
}

// queue appends u to the pending updates and wakes the committer.
func (s *Store) queue(u *update) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.broken != nil {
		s.mu.Unlock()
		return s.broken
	}
	s.pending = append(s.pending, u)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// failAsync makes the store refuse later updates after an async update
// failed with err, and returns the error they get.
func (s *Store) failAsync(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.broken = fmt.Errorf("store: %w: %w (%v)", ErrStorage, ErrAsyncLost, err)
	}
	return s.broken
}

// commitLoop is the single writer: it commits everything queued in one
// transaction, then the next batch. While a commit runs, new updates queue
// up, so batches grow with load and there is no added delay when idle.
//
// Closed-loop callers (each waiting for its commit before queueing the
// next update) would otherwise split into two alternating halves: those
// woken by one commit come back while the next one, holding the others,
// already runs. So when fewer updates wait than the last commit woke, the
// loop lingers for them: until as many wait, or none arrived for
// lingerGap, or it lingered half of the last commit's time (at most
// lingerMax). A lone caller is never delayed (the last commit woke one),
// nor is one after a burst by more than lingerGap.
func (s *Store) commitLoop() {
	defer close(s.done)
	var woke int               // synchronous callers the last commit woke
	var lastTook time.Duration // how long the last commit took
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
		if len(s.pending) < woke && !s.closed && !s.opts.NoLinger {
			s.mu.Unlock()
			s.linger(woke, min(lastTook/2, lingerMax))
			s.mu.Lock()
		}
		n := min(len(s.pending), s.opts.MaxBatch)
		batch := s.pending[:n:n]
		s.pending = s.pending[n:]
		broken := s.broken
		s.mu.Unlock()
		if broken != nil {
			for _, u := range batch {
				u.finish(broken)
			}
			continue
		}
		t0 := time.Now()
		s.commit(batch)
		lastTook = time.Since(t0)
		s.stats.note(len(batch), lastTook)
		woke = 0
		for _, u := range batch {
			if u.then == nil {
				woke++
			}
		}
	}
}

// Lingering bounds (see commitLoop).
const (
	lingerGap = 50 * time.Microsecond
	lingerMax = time.Millisecond
)

// linger waits until want updates are pending, none arrived for lingerGap,
// or most has passed.
func (s *Store) linger(want int, most time.Duration) {
	gap := min(lingerGap, most)
	if gap <= 0 {
		return
	}
	deadline := time.Now().Add(most)
	t := time.NewTimer(gap)
	defer t.Stop()
	for {
		select {
		case <-s.wake:
		case <-t.C:
			return
		}
		s.mu.Lock()
		n, closed := len(s.pending), s.closed
		s.mu.Unlock()
		left := time.Until(deadline)
		if n >= want || closed || left <= 0 {
			// A wake-up consumed here may have been the close's: give it
			// back so the loop sees it.
			select {
			case s.wake <- struct{}{}:
			default:
			}
			return
		}
		t.Reset(min(gap, left))
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
			u := batch[failed]
			if u.then != nil {
				// What was queued after it may depend on it: refused, and
				// so is everything later; what came before is retried.
				broken := s.failAsync(u.err)
				for _, v := range batch[failed+1:] {
					v.finish(broken)
				}
				batch = batch[:failed:failed]
			} else {
				batch = append(batch[:failed:failed], batch[failed+1:]...)
			}
			u.finish(u.err)
			continue
		}
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrStorage, err)
			for _, u := range batch {
				if u.then != nil {
					s.failAsync(err)
					break
				}
			}
		}
		for _, u := range batch {
			u.finish(err)
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

// commitStats counts the group commit's work (Stats).
type commitStats struct {
	commits, updates, nanos atomic.Int64
}

func (c *commitStats) note(n int, d time.Duration) {
	c.commits.Add(1)
	c.updates.Add(int64(n))
	c.nanos.Add(int64(d))
}

// CommitStats is what the group commit has done since Open.
type CommitStats struct {
	Commits int64         // transactions committed (or failed)
	Updates int64         // Update calls they carried
	Busy    time.Duration // time spent committing
	Queued  int           // updates waiting for the next commit now
}

// Stats returns the group commit's counters since Open.
func (s *Store) Stats() CommitStats {
	s.mu.Lock()
	queued := len(s.pending)
	s.mu.Unlock()
	return CommitStats{Commits: s.stats.commits.Load(), Updates: s.stats.updates.Load(), Busy: time.Duration(s.stats.nanos.Load()), Queued: queued}
}
