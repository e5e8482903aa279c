//go:build linux

package lazyfs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Child processes of these tests: they use files on a mount served by the
// test process, which must not itself take page faults on its own mount
// (a Go process faulting on an mmap it serves can stall itself).
const (
	childEnv     = "LAZYFS_TEST_CHILD"
	childPathEnv = "LAZYFS_TEST_PATH"
	childArgEnv  = "LAZYFS_TEST_ARG"
)

func child(role, path string) int {
	if err := runChild(role, path, os.Getenv(childArgEnv)); err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 3
	}
	return 0
}

func runChild(role, path, arg string) error {
	switch role {
	case "fds": // print how many descriptors on /dev/fuse this process has
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return err
		}
		n := 0
		for _, e := range entries {
			if target, _ := os.Readlink("/proc/self/fd/" + e.Name()); target == "/dev/fuse" {
				n++
			}
		}
		fmt.Println(n)
		return nil
	case "mmap": // print the file's content as read through a shared mmap
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		b, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return err
		}
		defer syscall.Munmap(b)
		fmt.Printf("%s\n", b)
		return nil
	case "bolt-commit", "bolt-commit-nosync": // commit arg keys, one per transaction, then wait to be killed
		n, _ := strconv.Atoi(arg)
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			return err
		}
		// NoGrowSync too: growing the file fsyncs it, which would make the
		// commits before it durable.
		db.NoSync = role == "bolt-commit-nosync"
		db.NoGrowSync = db.NoSync
		for i := 1; i <= n; i++ {
			if err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("b"))
				if err != nil {
					return err
				}
				return b.Put(binary.BigEndian.AppendUint64(nil, uint64(i)), make([]byte, 100))
			}); err != nil {
				return err
			}
		}
		fmt.Println("committed", n)
		_, err = io.Copy(io.Discard, os.Stdin) // until killed
		return err
	case "bolt-count": // print how many keys the database holds, or "locked"
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 200 * time.Millisecond})
		if errors.Is(err, berrors.ErrTimeout) {
			fmt.Println("locked")
			return nil
		}
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			n := 0
			if b := tx.Bucket([]byte("b")); b != nil {
				n = b.Stats().KeyN
			}
			fmt.Println(n)
			return nil
		})
	}
	return fmt.Errorf("unknown role %q", role)
}

// spawn starts the test binary as role on path. It is killed at the end of
// the test at the latest; call the returned function to kill it earlier.
func spawn(t *testing.T, role, path, arg string) (lines *bufio.Scanner, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test, even on a timeout
	cmd.Env = append(os.Environ(), childEnv+"="+role, childPathEnv+"="+path, childArgEnv+"="+arg)
	cmd.Stderr = &strings.Builder{}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	kill = func() {
		if done {
			return
		}
		done = true
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Cleanup(kill)
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	t.Cleanup(func() {
		if s := cmd.Stderr.(*strings.Builder).String(); s != "" {
			t.Logf("%s child's stderr: %s", role, s)
		}
	})
	return sc, kill
}

// runOnce runs role to its end and returns its first line of output.
func runOnce(t *testing.T, role, path, arg string) string {
	t.Helper()
	sc, kill := spawn(t, role, path, arg)
	defer kill()
	if !sc.Scan() {
		t.Fatalf("%s child printed nothing (%v)", role, sc.Err())
	}
	return sc.Text()
}

func TestMmapReads(t *testing.T) {
	f, _, mnt := setup(t)
	p := filepath.Join(mnt, "f")
	write(t, p, []byte("synced.."), 0, true)
	syncDir(t, mnt)
	write(t, p, []byte("UNSYNCED"), 0, false)
	if got := runOnce(t, "mmap", p, ""); got != "UNSYNCED" {
		t.Errorf("mmap while powered: %q, want the unsynced data", got)
	}
	cut(t, f)
	if got := runOnce(t, "mmap", p, ""); got != "synced.." {
		t.Errorf("mmap after a cut: %q, want only the synced data", got)
	}
}

// bbolt's commits fdatasync: they survive a cut. With NoSync they do not.
func TestBoltCommitsSurvive(t *testing.T) {
	for _, tc := range []struct {
		role string
		want string
	}{{"bolt-commit", "200"}, {"bolt-commit-nosync", "0"}} {
		t.Run(tc.role, func(t *testing.T) {
			f, _, mnt := setup(t)
			db := filepath.Join(mnt, "bolt.db")
			sc, kill := spawn(t, tc.role, db, "200")
			if !sc.Scan() || sc.Text() != "committed 200" {
				t.Fatalf("committing child: %q %v", sc.Text(), sc.Err())
			}
			if got := runOnce(t, "bolt-count", db, ""); got != "locked" {
				t.Errorf("a second process opening the database: %s, want it locked out (flock)", got)
			}
			syncDir(t, mnt) // bbolt does not fsync the directory it creates its file in
			kill()
			cut(t, f)
			if got := runOnce(t, "bolt-count", db, ""); got != tc.want {
				t.Errorf("after the cut: %s keys, want %s", got, tc.want)
			}
		})
	}
}

// A child process must not inherit the FUSE device (it would keep the
// connection alive after an unmount, and hang).
func TestChildDoesNotInheritFuseDevice(t *testing.T) {
	_, _, mnt := setup(t)
	if got := runOnce(t, "fds", mnt, ""); got != "0" {
		t.Errorf("a child process holds %s descriptors on /dev/fuse", got)
	}
}
