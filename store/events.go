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
	err := s.Update(func(tx *Tx) error {
		b := tx.tx.Bucket(bucketEvents)
		var err error
		if id, err = b.NextSequence(); err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, id), data)
	})
	return id, err
}

// Events returns up to limit events with ID > after, in order.
func (s *Store) Events(after uint64, limit int) ([]Event, error) {
	var out []Event
	err := s.View(func(tx *Tx) error {
		c := tx.tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < limit; k, v = c.Next() {
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
		b := tx.tx.Bucket(bucketEvents)
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}

// LastEventID returns the ID of the newest event ever appended (0: none).
func (s *Store) LastEventID() (uint64, error) {
	var id uint64
	err := s.View(func(tx *Tx) error {
		id = tx.tx.Bucket(bucketEvents).Sequence()
		return nil
	})
	return id, err
}
