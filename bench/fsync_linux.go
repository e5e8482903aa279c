//go:build linux

package bench

import (
	"os"
	"syscall"
)

const syncName = "fdatasync"

// datasync is fdatasync(2), what bbolt calls on Linux.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
