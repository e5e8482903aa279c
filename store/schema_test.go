package store

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// schema2Dir returns a data directory holding testdata/schema2.db.gz, a
// file written by the schema-2 store (see testdata/mkv2), after edit (if not
// nil) changed it with raw bbolt.
func schema2Dir(t *testing.T, edit func(*bolt.Tx) error) string {
	t.Helper()
	f, err := os.Open("testdata/schema2.db.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(edit); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	return dir
}

// schemaOf reads the schema version of a closed data directory.
func schemaOf(t *testing.T, dir string) uint64 {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	_ = db.View(func(tx *bolt.Tx) error { v = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keySchema)); return nil })
	return v
}

// A schema-2 file is upgraded in place: every record is kept, and each
// peer's parked boundary and log length are computed from its log.
func TestUpgradeFromSchema2(t *testing.T) {
	dir := schema2Dir(t, nil)
	if v := schemaOf(t, dir); v != 2 {
		t.Fatalf("testdata is schema %d", v)
	}
	s := open(t, dir)
	// What the generator wrote (testdata/mkv2/main.go), as models.
	tagged := func(id string, parkedTo uint64, seqs ...uint64) []modelRec {
		var rs []modelRec
		for _, q := range seqs {
			rs = append(rs, modelRec{q, q <= parkedTo, fmt.Sprintf(`"%s-%d"`, id, q)})
		}
		return rs
	}
	want := map[string]*logModel{
		"peerA": {next: 10, acked: 3, recs: tagged("peerA", 0, 4, 5, 6, 7, 8, 9, 10)},
		"peerB": {next: 8, acked: 2, recs: tagged("peerB", 5, 3, 4, 5, 6, 7, 8)},
		"peerC": {next: 4, recs: tagged("peerC", 3, 1, 2, 3, 4)},
		"peerD": {next: 4, acked: 4},
		"peerE": {},
		// Schema 2 let a parked message follow an unparked one; the
		// upgrade parks the one before it, as the schema-2 node treated it.
		"peerF": {next: 2, recs: tagged("peerF", 2, 1, 2)},
	}
	wantParkedTo := map[string]uint64{"peerB": 5, "peerC": 3, "peerF": 2}
	err := s.View(func(tx *Tx) error {
		ids, err := tx.PeerIDs()
		if err != nil || len(ids) != len(want) {
			return fmt.Errorf("peers %v (%v)", ids, err)
		}
		for id, m := range want {
			if err := checkLog(tx, id, m); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			rec, _, _ := tx.Peer(id)
			if rec.ParkedTo != wantParkedTo[id] {
				return fmt.Errorf("%s: ParkedTo %d, want %d", id, rec.ParkedTo, wantParkedTo[id])
			}
			if out, _ := tx.Out(id, 0, 1); len(out) > 0 && (out[0].Method != "deliver" || string(out[0].Params) != fmt.Sprintf(`["%s",%d]`, id, out[0].Seq) || out[0].At.IsZero()) {
				return fmt.Errorf("%s: message %+v", id, out[0])
			}
		}
		if rec, _, _ := tx.Peer("peerE"); len(rec.Hints) != 1 {
			return fmt.Errorf("peerE hints %v", rec.Hints)
		}
		if id, ok, err := tx.Identity(); !ok || err != nil || id.PeerID != "12D3KooWv2" {
			return fmt.Errorf("identity %+v %v %v", id, ok, err)
		}
		if at, err := tx.LastActive(); err != nil || at.IsZero() {
			return fmt.Errorf("last active %v %v", at, err)
		}
		if pool, err := tx.Relays(); err != nil || len(pool) != 1 || !pool[0].IsBootstrap {
			return fmt.Errorf("relays %+v %v", pool, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Events(0, 10); err != nil || len(evs) != 1 || string(evs[0].Data) != `{"kind":"v2"}` {
		t.Fatalf("events %v %v", evs, err)
	}
	// The upgraded file works: peerB's parked messages are resent.
	var rs []OutRecord
	if err := s.Update(func(tx *Tx) (err error) { rs, err = tx.UnparkOut("peerB"); return }); err != nil || len(rs) != 3 || rs[0].Seq != 3 {
		t.Fatalf("unpark after upgrade: %v %v", seqsOf(rs), err)
	}
	s.Close()
	if v := schemaOf(t, dir); v != SchemaVersion {
		t.Fatalf("schema %d after upgrade, want %d", v, SchemaVersion)
	}
}

// A schema-2 file with a damaged message fails to open with ErrCorrupt and
// is left as it was.
func TestUpgradeFromSchema2Corrupt(t *testing.T) {
	dir := schema2Dir(t, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPeers).Bucket([]byte("peerA")).Bucket(bucketOut).Put(seqKey(5), []byte("{not json"))
	})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "peerA") {
		t.Fatalf("Open: %v, want ErrCorrupt naming peerA", err)
	}
	if v := schemaOf(t, dir); v != 2 {
		t.Fatalf("schema %d after a failed upgrade, want 2 (unchanged)", v)
	}
}

// A schema-1 file (before the event log) is upgraded in place, keeping its
// data.
func TestUpgradeFromSchema1(t *testing.T) {
	dir := schema2Dir(t, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketEvents); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, 1))
	})
	s := open(t, dir)
	if _, err := s.AppendEvent([]byte(`{}`)); err != nil {
		t.Fatalf("event log after upgrade: %v", err)
	}
	if err := s.View(func(tx *Tx) error {
		out, err := tx.Out("peerA", 0, 0)
		if len(out) != 7 {
			t.Errorf("data lost in the upgrade: %v", out)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
