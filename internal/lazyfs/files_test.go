//go:build linux

package lazyfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func setup(t *testing.T) (*FS, string, string) {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
	return MountForTest(t, backing, mnt), backing, mnt
}

// write writes data at off in path (creating it), fsyncing it if sync.
func write(t *testing.T, path string, data []byte, off int64, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func syncDir(t *testing.T, path string) {
	t.Helper()
	d, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync of directory %s: %v", path, err)
	}
}

func cut(t *testing.T, f *FS) {
	t.Helper()
	if err := f.PowerCut(); err != nil {
		t.Fatal(err)
	}
}

// want checks path holds data (nil: does not exist).
func want(t *testing.T, path string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	switch {
	case data == nil && errors.Is(err, os.ErrNotExist):
	case data == nil && err == nil:
		t.Errorf("%s exists (%d bytes), want it gone", path, len(got))
	case err != nil:
		t.Errorf("%s: %v", path, err)
	case !bytes.Equal(got, data):
		t.Errorf("%s holds %q, want %q", path, trim(got), trim(data))
	}
}

func trim(b []byte) []byte {
	if len(b) > 40 {
		return append(b[:40:40], "..."...)
	}
	return b
}

func TestUnsyncedWriteLostSyncedKept(t *testing.T) {
	f, backing, mnt := setup(t)
	write(t, filepath.Join(mnt, "synced"), []byte("kept"), 0, true)
	write(t, filepath.Join(mnt, "unsynced"), []byte("lost"), 0, false)
	syncDir(t, mnt)
	want(t, filepath.Join(mnt, "unsynced"), []byte("lost")) // readable while powered
	want(t, filepath.Join(backing, "unsynced"), []byte{})   // not durable
	cut(t, f)
	want(t, filepath.Join(mnt, "synced"), []byte("kept"))
	want(t, filepath.Join(mnt, "unsynced"), []byte{}) // its entry was synced, its data not
	want(t, filepath.Join(backing, "synced"), []byte("kept"))
	if _, err := os.Stat(filepath.Join(backing, OrphanDir)); err != nil {
		t.Errorf("orphan area after a cut: %v", err)
	}
}

func TestOverwriteAfterSyncReverts(t *testing.T) {
	f, _, mnt := setup(t)
	p := filepath.Join(mnt, "f")
	write(t, p, bytes.Repeat([]byte("a"), 10000), 0, true)
	syncDir(t, mnt)
	write(t, p, []byte("BBBB"), 4094, false) // across a page boundary
	write(t, p, []byte("cc"), 9999, false)   // overlapping the end, growing the file
	cur := bytes.Repeat([]byte("a"), 10001)
	copy(cur[4094:], "BBBB")
	copy(cur[9999:], "cc")
	want(t, p, cur)
	cut(t, f)
	want(t, p, bytes.Repeat([]byte("a"), 10000))
}

func TestTruncate(t *testing.T) {
	f, backing, mnt := setup(t)
	p := filepath.Join(mnt, "f")
	orig := bytes.Repeat([]byte("x"), 10000)
	write(t, p, orig, 0, true)
	syncDir(t, mnt)
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 10000); err != nil {
		t.Fatal(err)
	}
	shrunk := append(bytes.Repeat([]byte("x"), 100), make([]byte, 9900)...)
	want(t, p, shrunk) // the bytes cut off come back as zeros, not as old data
	cut(t, f)
	want(t, p, orig) // the truncations were not synced

	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 10000); err != nil {
		t.Fatal(err)
	}
	write(t, p, nil, 0, true) // fsync
	want(t, filepath.Join(backing, "f"), shrunk)
	cut(t, f)
	want(t, p, shrunk)

	// ftruncate on an open file, then fdatasync.
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := fh.Truncate(50); err != nil {
		t.Fatal(err)
	}
	if fi, err := fh.Stat(); err != nil || fi.Size() != 50 {
		t.Fatalf("size after ftruncate: %v %v", fi, err)
	}
	if err := syscall.Fdatasync(int(fh.Fd())); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	cut(t, f)
	want(t, p, shrunk[:50])
}

func TestNewFileNeedsDirectorySync(t *testing.T) {
	f, backing, mnt := setup(t)
	write(t, filepath.Join(mnt, "f"), []byte("data"), 0, true)
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mnt, "d", "g"), []byte("data"), 0, true)
	syncDir(t, filepath.Join(mnt, "d")) // but never the root: d has no durable entry
	want(t, filepath.Join(backing, "f"), nil)
	cut(t, f)
	want(t, filepath.Join(mnt, "f"), nil) // fsync'd, but its entry was not
	want(t, filepath.Join(mnt, "d", "g"), nil)
	entries, err := os.ReadDir(backing)
	if err != nil || len(entries) != 1 || entries[0].Name() != OrphanDir {
		t.Errorf("backing after the cut: %v %v, want only %s", entries, err, OrphanDir)
	}

	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mnt, "d", "g"), []byte("data"), 0, true)
	syncDir(t, filepath.Join(mnt, "d"))
	syncDir(t, mnt)
	cut(t, f)
	want(t, filepath.Join(mnt, "d", "g"), []byte("data"))
	want(t, filepath.Join(backing, "d", "g"), []byte("data"))
}

func TestUnlink(t *testing.T) {
	f, _, mnt := setup(t)
	p := filepath.Join(mnt, "f")
	write(t, p, []byte("data"), 0, true)
	syncDir(t, mnt)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	want(t, p, nil)
	cut(t, f)
	want(t, p, []byte("data")) // the unlink was not synced
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	cut(t, f)
	want(t, p, nil)
}

func TestRename(t *testing.T) {
	f, backing, mnt := setup(t)
	tmp, final := filepath.Join(mnt, "tmp"), filepath.Join(mnt, "final")
	write(t, final, []byte("old"), 0, true)
	syncDir(t, mnt)

	// Without a directory fsync the rename is lost: the old names stay.
	write(t, tmp, []byte("new"), 0, true)
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	want(t, final, []byte("new"))
	want(t, tmp, nil)
	cut(t, f)
	want(t, final, []byte("old"))
	want(t, tmp, nil) // its creation was not synced either

	// With it, the rename is durable, replacing the old file.
	write(t, tmp, []byte("new"), 0, true)
	syncDir(t, mnt)
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	cut(t, f)
	want(t, final, []byte("new"))
	want(t, tmp, nil)
	want(t, filepath.Join(backing, "final"), []byte("new"))

	// Across directories, an fsync of either directory persists both
	// halves: the file is never in both places nor in neither.
	if err := os.Mkdir(filepath.Join(mnt, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	if err := os.Rename(final, filepath.Join(mnt, "a", "moved")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, filepath.Join(mnt, "a"))
	cut(t, f)
	want(t, final, nil)
	want(t, filepath.Join(mnt, "a", "moved"), []byte("new"))

	// Renames in a cycle (a swap through a third name) persist together.
	x, y := filepath.Join(mnt, "x"), filepath.Join(mnt, "y")
	write(t, x, []byte("X"), 0, true)
	write(t, y, []byte("Y"), 0, true)
	syncDir(t, mnt)
	for _, r := range [][2]string{{x, tmp}, {y, x}, {tmp, y}} {
		if err := os.Rename(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	syncDir(t, mnt)
	cut(t, f)
	want(t, x, []byte("Y"))
	want(t, y, []byte("X"))

	// A directory moved into a directory that was inside it.
	if err := os.MkdirAll(filepath.Join(mnt, "p", "q"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mnt, "p", "q", "f"), []byte("f"), 0, true)
	syncDir(t, filepath.Join(mnt, "p", "q"))
	syncDir(t, filepath.Join(mnt, "p"))
	syncDir(t, mnt)
	if err := os.Rename(filepath.Join(mnt, "p", "q"), filepath.Join(mnt, "q")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "p"), filepath.Join(mnt, "q", "p")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, filepath.Join(mnt, "q"))
	cut(t, f)
	want(t, filepath.Join(mnt, "q", "f"), []byte("f"))
	if fi, err := os.Stat(filepath.Join(mnt, "q", "p")); err != nil || !fi.IsDir() {
		t.Errorf("q/p after the cut: %v %v", fi, err)
	}
}

func TestFlock(t *testing.T) {
	_, _, mnt := setup(t)
	p := filepath.Join(mnt, "lock")
	write(t, p, nil, 0, false)
	a, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := syscall.Flock(int(a.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(b.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != syscall.EWOULDBLOCK {
		t.Fatalf("second flock: %v, want EWOULDBLOCK", err)
	}
	if err := syscall.Flock(int(a.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(b.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock after unlock: %v", err)
	}
}

func TestPowerCutWhileBusy(t *testing.T) {
	f, _, mnt := setup(t)
	p := filepath.Join(mnt, "f")
	write(t, p, []byte("data"), 0, true)
	syncDir(t, mnt)
	h, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.PowerCut(); !errors.Is(err, ErrBusy) {
		t.Fatalf("PowerCut with a file open: %v, want ErrBusy", err)
	}
	if _, err := h.WriteAt([]byte("late"), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("write after the power went off: %v, want EIO", err)
	}
	if err := h.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync after the power went off: %v, want EIO", err)
	}
	h.Close()
	cut(t, f)
	want(t, p, []byte("data"))
	if f.Cuts() != 1 {
		t.Errorf("Cuts() = %d, want 1", f.Cuts())
	}
}

func TestUnmountWritesBack(t *testing.T) {
	backing, mnt := t.TempDir(), t.TempDir()
	f := MountForTest(t, backing, mnt)
	if err := os.MkdirAll(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mnt, "d", "f"), []byte("unsynced"), 0, false)
	if err := f.Unmount(); err != nil {
		t.Fatal(err)
	}
	want(t, filepath.Join(backing, "d", "f"), []byte("unsynced"))
	if _, err := os.Stat(filepath.Join(backing, OrphanDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan area left after Unmount: %v", err)
	}
	if err := f.PowerCut(); !errors.Is(err, ErrUnmounted) {
		t.Errorf("PowerCut after Unmount: %v, want ErrUnmounted", err)
	}
}

func TestMountErrors(t *testing.T) {
	Require(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	write(t, file, nil, 0, false)
	if _, err := Mount(file, dir); !errors.Is(err, ErrNotDir) {
		t.Errorf("backing is a file: %v, want ErrNotDir", err)
	}
	if _, err := Mount(dir, filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing mountpoint: %v", err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Mount(dir, t.TempDir()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("backing with a symlink: %v, want ErrUnsupported", err)
	}
}
