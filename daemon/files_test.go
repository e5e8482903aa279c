package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A new data directory is made 0700; one others can write to is refused
// before the node opens anything in it, unless explicitly allowed; the
// secrets in it are 0600.
func TestDataDirModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	o := testOptions(t)
	o.Node.Dir, o.API = dir, "127.0.0.1:0"
	d := startDaemon(t, o)
	for _, p := range []string{dir, filepath.Join(dir, TokenFile), filepath.Join(dir, AddrFile)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
	d.Stop(context.Background())

	for _, mode := range []os.FileMode{0o777, 0o770, 0o702} {
		bad := t.TempDir()
		os.Chmod(bad, mode)
		o := testOptions(t)
		o.Node.Dir = bad
		_, err := Start(context.Background(), o)
		if !errors.Is(err, ErrInsecureDir) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "chmod 700") {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if entries, _ := os.ReadDir(bad); len(entries) != 0 {
			t.Fatalf("mode %04o: the refused directory was written to: %v", mode, entries)
		}
	}
	ok := t.TempDir()
	os.Chmod(ok, 0o755) // readable by others is fine; writable is not
	o = testOptions(t)
	o.Node.Dir = ok
	startDaemon(t, o).Stop(context.Background())

	allowed := t.TempDir()
	os.Chmod(allowed, 0o777)
	o = testOptions(t)
	o.Node.Dir, o.AllowInsecureDir = allowed, true
	startDaemon(t, o)

	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if err := CheckDataDir(file, false); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a file as data directory: %v", err)
	}
}

// writeFileAtomic leaves the old file when it cannot finish, and no
// temporary file.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := writeFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if err := writeFileAtomic(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	entries, _ := os.ReadDir(dir)
	if string(b) != "two" || len(entries) != 1 {
		t.Fatalf("content %q, files %v", b, entries)
	}
}
