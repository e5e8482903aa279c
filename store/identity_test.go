package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentityPersists(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	id := Identity{KeySeed: strings.Repeat("ab", 32), PeerID: "12D3KooWtest", IncarnationID: "3f0c2f9e-6a39-4a8e-9b1e-0d5c3c2b1a00"}
	if err := s.Update(func(tx *Tx) error { return tx.SetIdentity(id) }); err != nil {
		t.Fatal(err)
	}
	err := s.Update(func(tx *Tx) error { return tx.SetIdentity(Identity{KeySeed: "00", PeerID: "other"}) })
	if err == nil || !strings.Contains(err.Error(), "already stored") {
		t.Errorf("replacing the identity: %v", err)
	}
	s.Close()
	s2 := open(t, dir)
	var got Identity
	var ok bool
	if err := s2.View(func(tx *Tx) (err error) { got, ok, err = tx.Identity(); return }); err != nil || !ok || got != id {
		t.Fatalf("identity after reopen: %+v %v %v", got, ok, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600", fi.Mode(), err)
	}
}
