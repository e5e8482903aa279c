package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("STORE_TEST_HOLD"); dir != "" {
		// Helper process: open the directory and hold it until killed.
		if _, err := Open(dir, Options{}); err != nil {
			fmt.Println("open failed:", err)
			os.Exit(1)
		}
		fmt.Println("opened")
		for {
			time.Sleep(time.Hour) // held until the test kills this process (a timer, so the runtime sees no deadlock)
		}
	}
	goleak.VerifyTestMain(m)
}

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_TEST_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "opened\n" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	start := time.Now()
	_, err = Open(dir, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second process: %v, want ErrLocked naming %s", err, dir)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v: it should fail fast, not hang", d)
	}
	// Once the holder is gone (killed), the directory opens.
	cmd.Process.Kill()
	cmd.Wait()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	s.Close()
}

func TestCorruptAndForeignFiles(t *testing.T) {
	write := func(t *testing.T, data []byte) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run("garbage", func(t *testing.T) {
		_, err := Open(write(t, []byte(strings.Repeat("not a database ", 1000))), Options{})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		s.Close()
		data, _ := os.ReadFile(filepath.Join(dir, FileName))
		if err := os.WriteFile(filepath.Join(dir, FileName), data[:100], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("other application", func(t *testing.T) {
		dir := t.TempDir()
		db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err })
		db.Close()
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrForeign) {
			t.Fatalf("err = %v, want ErrForeign", err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		s.Close()
		db, _ := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
		_ = db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion+1))
		})
		db.Close()
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrTooNew) {
			t.Fatalf("err = %v, want ErrTooNew", err)
		}
	})
}

func TestClosedStore(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{{MaxBatch: -1}, {LockTimeout: -time.Second}} {
		if s, err := Open(t.TempDir(), o); !errors.Is(err, ErrInvalidOptions) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%+v): %v, want ErrInvalidOptions", o, err)
		}
	}
	// MaxBatch 1: every update in its own transaction, all still commit.
	s, err := Open(t.TempDir(), Options{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := s.Update(func(tx *Tx) error { _, err := tx.AppendOut("p", OutRecord{Method: "m"}); return err }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	_ = s.View(func(tx *Tx) error {
		if rec, _, _ := tx.Peer("p"); rec.NextSeq != 8 {
			t.Errorf("NextSeq %d, want 8", rec.NextSeq)
		}
		return nil
	})
}
