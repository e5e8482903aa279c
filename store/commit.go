package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

type update struct {
	fn   func(*Tx) error
	err  error
	done chan struct{}
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
