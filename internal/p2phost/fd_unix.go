//go:build unix

package p2phost

import "syscall"

// openFileLimit returns the process's soft RLIMIT_NOFILE (the Go runtime
// raises it to the hard limit at start), or 0 when it cannot be read.
func openFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}
