package store

import (
	"time"
)

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
