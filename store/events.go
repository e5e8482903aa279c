package store

import (
	"encoding/binary"
)

// Event is one entry of the durable event log.
type Event struct {
	ID   uint64
	Data []byte
}

// AppendEvent appends data to the durable event log (used by the peer
// daemon so that an API client that was away misses nothing) and returns its
// ID, from 1, once it is durable.
func (s *Store) AppendEvent(data []byte) (uint64, error) {
	var id uint64
	err := s.Update(appendEvent(data, &id))
	return id, err
}

// AppendEventAsync queues data for the event log and returns at once; done
// gets its ID once it is durable, or the error (see UpdateAsync for the
// order guarantee and what a failure does). done runs on the store's commit
// goroutine and must not block.
func (s *Store) AppendEventAsync(data []byte, done func(id uint64, err error)) {
	var id uint64
	s.UpdateAsync(appendEvent(data, &id), func(err error) { done(id, err) })
}

func appendEvent(data []byte, id *uint64) func(*Tx) error {
	return func(tx *Tx) error {
		b := tx.tx.Bucket(bucketEvents)
		var err error
		if *id, err = b.NextSequence(); err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, *id), data)
	}
}

// Events returns up to limit events with ID > after, in order.
func (s *Store) Events(after uint64, limit int) ([]Event, error) {
	return s.EventsWithin(after, limit, -1)
}

// EventsWithin returns events with ID > after, in order: up to limit of them
// and, when maxBytes ≥ 0, no more than fit in maxBytes of event data (but at
// least one), so a reader holds no more than it asked for.
func (s *Store) EventsWithin(after uint64, limit, maxBytes int) ([]Event, error) {
	var out []Event
	used := 0
	err := s.View(func(tx *Tx) error {
		c := tx.tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < limit; k, v = c.Next() {
			if maxBytes >= 0 && len(out) > 0 && used+len(v) > maxBytes {
				break
			}
			used += len(v)
			out = append(out, Event{ID: binary.BigEndian.Uint64(k), Data: append([]byte(nil), v...)})
		}
		return nil
	})
	return out, err
}

// TrimEvents deletes every event with ID ≤ upTo (a consumer acknowledged
// them) and returns how many it deleted.
func (s *Store) TrimEvents(upTo uint64) (int, error) {
	n := 0
	err := s.Update(func(tx *Tx) error {
		var err error
		n, err = deleteRange(tx.tx.Bucket(bucketEvents), 0, upTo)
		return err
	})
	return n, err
}
