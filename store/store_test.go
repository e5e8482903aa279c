package store

import (
	"encoding/binary"
	"encoding/json"
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

// Group commit under many concurrent writers: every update is committed
// exactly once, sequence numbers are contiguous, a failing update does not
// fail the others.
func TestGroupCommitConcurrent(t *testing.T) {
	s := open(t, t.TempDir())
	const writers, each = 16, 50
	var wg sync.WaitGroup
	seqs := make(chan uint64, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var seq uint64
				err := s.Update(func(tx *Tx) (err error) {
					seq, err = tx.AppendOut("peerA", OutRecord{Method: "m", Params: json.RawMessage(fmt.Sprintf(`[%d,%d]`, w, i))})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
				if i%10 == 0 {
					bad := errors.New("bad op")
					if err := s.Update(func(tx *Tx) error { _, _ = tx.AppendOut("peerA", OutRecord{Method: "x"}); return bad }); !errors.Is(err, bad) {
						t.Errorf("failing update returned %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for q := range seqs {
		if seen[q] {
			t.Fatalf("seq %d assigned twice", q)
		}
		seen[q] = true
	}
	var out []OutRecord
	var rec PeerRecord
	_ = s.View(func(tx *Tx) (err error) {
		out, err = tx.Out("peerA", 0, 0)
		rec, _, _ = tx.Peer("peerA")
		return err
	})
	if len(out) != writers*each || rec.NextSeq != writers*each {
		t.Fatalf("log has %d messages, nextSeq %d, want %d (failed updates must leave nothing)", len(out), rec.NextSeq, writers*each)
	}
	for i, r := range out {
		if r.Seq != uint64(i+1) || !seen[r.Seq] {
			t.Fatalf("log position %d has seq %d", i, r.Seq)
		}
	}
}

func TestAckAndPark(t *testing.T) {
	s := open(t, t.TempDir())
	for i := range 5 {
		if err := s.Update(func(tx *Tx) error {
			_, err := tx.AppendOut("p", OutRecord{Method: "m", Tag: json.RawMessage(fmt.Sprint(i))})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var acked []OutRecord
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 3); return })
	if len(acked) != 3 || acked[0].Seq != 1 || string(acked[2].Tag) != "2" {
		t.Fatalf("acked %+v", acked)
	}
	// Duplicate and stale acks change nothing; acks beyond are clamped.
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 2); return })
	if len(acked) != 0 {
		t.Fatalf("stale ack deleted %v", acked)
	}
	var parked []OutRecord
	_ = s.Update(func(tx *Tx) (err error) { parked, err = tx.ParkOut("p"); return })
	if len(parked) != 2 || parked[0].Seq != 4 || !parked[1].Parked {
		t.Fatalf("parked %+v", parked)
	}
	var rec PeerRecord
	_ = s.Update(func(tx *Tx) (err error) { acked, err = tx.Ack("p", 99); rec, _, _ = tx.Peer("p"); return })
	if rec.Acked != 5 || len(acked) != 2 {
		t.Fatalf("clamped ack: acked %d records, Acked=%d", len(acked), rec.Acked)
	}
	_ = s.Update(func(tx *Tx) error { return tx.ForgetPeer("p") })
	var ok bool
	_ = s.View(func(tx *Tx) (err error) { _, ok, err = tx.Peer("p"); return })
	if ok {
		t.Fatal("peer still stored after ForgetPeer")
	}
}

// Relay pool rules of reference §4.5 / §8.9 #113.
func TestRelayPool(t *testing.T) {
	s := open(t, t.TempDir())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pool []RelayEntry
	get := func() []RelayEntry {
		_ = s.View(func(tx *Tx) (err error) { pool, err = tx.Relays(); return })
		return pool
	}
	if len(get()) != 0 {
		t.Fatal("new pool not empty")
	}
	update := func(f func(tx *Tx) error) {
		if err := s.Update(f); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *Tx) error { return tx.SetBootstrapRelays([]string{"b1", "b2"}, t0, 4) })
	for i := range 4 {
		update(func(tx *Tx) error {
			return tx.AddKnownRelays([]string{fmt.Sprintf("l%d", i)}, t0.Add(time.Duration(i)*time.Hour), 4)
		})
	}
	got := get()
	if len(got) != 4 || got[0].Addr != "b1" || got[1].Addr != "b2" || got[2].Addr != "l3" || got[3].Addr != "l2" {
		t.Fatalf("capped pool %+v: want bootstrap first, then newest learned", got)
	}
	// An empty relay list leaves the pool alone; a new list moves the flag.
	update(func(tx *Tx) error { return tx.SetBootstrapRelays(nil, t0, 4) })
	update(func(tx *Tx) error { return tx.SetBootstrapRelays([]string{"b2"}, t0.Add(10*time.Hour), 4) })
	got = get()
	if got[0].Addr != "b2" || !got[0].IsBootstrap {
		t.Fatalf("after new bootstrap list: %+v", got)
	}
	for _, e := range got {
		if e.Addr == "b1" && e.IsBootstrap {
			t.Fatalf("b1 kept the bootstrap flag: %+v", got)
		}
	}
	// Refreshing a known relay does not duplicate it.
	update(func(tx *Tx) error { return tx.AddKnownRelays([]string{"l3"}, t0.Add(20*time.Hour), 4) })
	count := 0
	for _, e := range get() {
		if e.Addr == "l3" {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("l3 appears %d times", count)
	}
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
