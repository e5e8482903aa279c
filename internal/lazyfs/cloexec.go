//go:build linux

package lazyfs

import (
	"os"
	"strconv"
	"syscall"
)

// mountNoInherit runs mount (which opens /dev/fuse) so that no child
// process inherits the FUSE device: go-fuse opens it without O_CLOEXEC, and
// a child holding it keeps the connection alive after this process
// unmounts or dies, so that the child, and the unmount, hang for ever
// waiting for answers nobody sends. ForkLock keeps other goroutines from
// starting processes until the descriptors are marked close-on-exec; mount
// must not start processes itself (DirectMountStrict: no fusermount).
func mountNoInherit(mount func() error) error {
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	err := mount()
	markFuseCloexec()
	return err
}

// markFuseCloexec sets FD_CLOEXEC on every descriptor of this process open
// on /dev/fuse.
func markFuseCloexec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}
