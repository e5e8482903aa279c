package store

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A migration step runs exactly once and is recorded.
func TestMigrationPath(t *testing.T) {
	dir := t.TempDir()
	ran := make([]int, len(migrations))
	orig := migrations
	defer func() { migrations = orig }()
	migrations = nil
	for i := range orig {
		migrations = append(migrations, func(tx *bolt.Tx) error { ran[i]++; return orig[i](tx) })
	}
	s := open(t, dir)
	s.Close()
	s = open(t, dir)
	s.Close()
	for i, n := range ran {
		if n != 1 {
			t.Errorf("migration %d ran %d times, want once", i, n)
		}
	}
}

// A schema-1 file (before the event log) is upgraded in place, keeping its
// data.
func TestUpgradeFromSchema1(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Update(func(tx *Tx) error { _, err := tx.AppendOut("p", OutRecord{Method: "m"}); return err }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketEvents); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, 1))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = open(t, dir)
	defer s.Close()
	if _, err := s.AppendEvent([]byte(`{}`)); err != nil {
		t.Fatalf("event log after upgrade: %v", err)
	}
	if err := s.View(func(tx *Tx) error {
		out, err := tx.Out("p", 1, 0)
		if len(out) != 1 {
			t.Errorf("data lost in the upgrade: %v", out)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
