//go:build !linux

package bench

import "os"

const syncName = "fsync"

// datasync is File.Sync where fdatasync(2) is not available.
func datasync(f *os.File) error { return f.Sync() }
