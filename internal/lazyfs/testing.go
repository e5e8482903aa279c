//go:build linux

package lazyfs

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// RequiredEnv names the environment variable that, set to "1", makes
// Require fail a test instead of skipping it (CI sets it).
const RequiredEnv = "OCAPNET_FUSE_REQUIRED"

// Require skips t, naming what is missing, unless FUSE mounts can be made
// here; with RequiredEnv=1 it fails t instead.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(RequiredEnv) == "1" {
			t.Fatalf("%v (%s=1: required)", err, RequiredEnv)
		}
		t.Skipf("%v (set %s=1 to fail instead)", err, RequiredEnv)
	}
}

// MountForTest mounts a lazyfs for t and unmounts it when t ends, even if
// t failed: if a process still holds it, it is detached (umount -l) and t
// fails. Register it before cleanups that stop processes using the mount.
func MountForTest(t testing.TB, backing, mountpoint string) *FS {
	t.Helper()
	Require(t)
	f, err := Mount(backing, mountpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := f.Unmount()
		if errors.Is(err, ErrBusy) {
			if derr := syscall.Unmount(mountpoint, syscall.MNT_DETACH); derr != nil {
				t.Errorf("lazyfs: detaching %s: %v", mountpoint, derr)
			}
		}
		if err != nil {
			t.Errorf("lazyfs: unmounting %s: %v", mountpoint, err)
		}
	})
	return f
}
