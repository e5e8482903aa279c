package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// opened finishes Open on a freshly opened database: it makes the data
// directory's entries durable (bbolt fsyncs its file but not the directory
// holding it, so after a power cut a new database file, or a new data
// directory, could be gone), applies the test-only no-fsync switch, and
// migrates.
func opened(db *bolt.DB, dir, path string) error {
	if fsyncOff {
		db.NoSync, db.NoGrowSync = true, true
	} else if err := syncDirs(dir); err != nil {
		return fmt.Errorf("store: data directory %s: %w: %v", dir, ErrStorage, err)
	}
	return migrate(db, path)
}

// syncDirs fsyncs dir (the database file's entry) and its parent (dir's
// own entry, in case Open created it). A parent this process may not read
// is one it did not create dir in, and is skipped.
func syncDirs(dir string) error {
	if err := syncDir(dir); err != nil {
		return err
	}
	err := syncDir(filepath.Dir(dir))
	if errors.Is(err, os.ErrPermission) {
		return nil
	}
	return err
}
