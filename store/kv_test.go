package store

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// gzDir returns a data directory holding the gzipped testdata file name.
func gzDir(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
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
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A schema-3 file (testdata/mkv3) opens: its data is kept and it gains the
// KV area, which then survives a reopen.
func TestUpgradeFromSchema3(t *testing.T) {
	dir := gzDir(t, "schema3.db.gz")
	if v := schemaOf(t, dir); v != 3 {
		t.Fatalf("testdata is schema %d", v)
	}
	s := open(t, dir)
	err := s.View(func(tx *Tx) error {
		id, ok, err := tx.Identity()
		if err != nil || !ok || id.IncarnationID != "inc-v3" {
			return fmt.Errorf("identity %+v %v %v", id, ok, err)
		}
		out, err := tx.Out("peerA", 0, 0)
		if err != nil || len(out) != 1 || out[0].Seq != 2 {
			return fmt.Errorf("peerA log %v %v", seqsOf(out), err)
		}
		if pool, err := tx.Relays(); err != nil || len(pool) != 1 {
			return fmt.Errorf("relays %+v %v", pool, err)
		}
		v, err := tx.KVGet("endpoint", []byte("x"))
		if err != nil || v != nil {
			return fmt.Errorf("KVGet on a fresh KV area: %q %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Events(0, 10); err != nil || len(evs) != 1 {
		t.Fatalf("events %v %v", evs, err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.KVPut("endpoint", []byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := schemaOf(t, dir); v != SchemaVersion {
		t.Fatalf("schema %d after upgrade, want %d", v, SchemaVersion)
	}
	s = open(t, dir)
	defer s.Close()
	if err := s.View(func(tx *Tx) error {
		v, err := tx.KVGet("endpoint", []byte("k"))
		if err != nil || string(v) != "v" {
			return fmt.Errorf("after reopen: %q %v", v, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// KV namespaces are independent; scans see a prefix in key order; deletes
// by prefix remove exactly the prefix.
func TestKV(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	err := s.Update(func(tx *Tx) error {
		for _, k := range []string{"p1/b", "p1/a", "p2/a", "p1"} {
			if err := tx.KVPut("ns", []byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return tx.KVPut("other", []byte("p1/a"), []byte("other"))
	})
	if err != nil {
		t.Fatal(err)
	}
	scan := func(ns, prefix string) string {
		var b bytes.Buffer
		_ = s.View(func(tx *Tx) error {
			return tx.KVScan(ns, []byte(prefix), func(k, v []byte) error { fmt.Fprintf(&b, "%s=%s;", k, v); return nil })
		})
		return b.String()
	}
	if got := scan("ns", "p1/"); got != "p1/a=vp1/a;p1/b=vp1/b;" {
		t.Fatalf("scan p1/: %s", got)
	}
	if got := scan("other", ""); got != "p1/a=other;" {
		t.Fatalf("scan other: %s", got)
	}
	if got := scan("missing", ""); got != "" {
		t.Fatalf("scan of a missing namespace: %s", got)
	}
	var n int
	if err := s.Update(func(tx *Tx) (err error) { n, err = tx.KVDeletePrefix("ns", []byte("p1/")); return }); err != nil || n != 2 {
		t.Fatalf("KVDeletePrefix: %d %v", n, err)
	}
	if got := scan("ns", ""); got != "p1=vp1;p2/a=vp2/a;" {
		t.Fatalf("after delete: %s", got)
	}
	if err := s.Update(func(tx *Tx) error { return tx.KVPut("", []byte("k"), nil) }); !errors.Is(err, ErrBadNamespace) {
		t.Fatalf("empty namespace: %v", err)
	}
}
