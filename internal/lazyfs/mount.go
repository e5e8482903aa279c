//go:build linux

package lazyfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	// ErrBusy: a process still has a file open on the mount, so it cannot
	// be unmounted. Kill it and try again.
	ErrBusy = errors.New("lazyfs: mount busy (a process still has files open on it)")
	// ErrUnmounted: the filesystem was unmounted.
	ErrUnmounted = errors.New("lazyfs: not mounted")
	// ErrNotDir: the backing directory or mountpoint is not a directory.
	ErrNotDir = errors.New("not a directory")
	// ErrUnsupported: the backing directory holds something this model
	// does not support (a symbolic link, a device), or an operation could
	// not be modelled.
	ErrUnsupported = errors.New("not supported by lazyfs")
	// ErrUnavailable: this machine cannot mount FUSE filesystems here.
	ErrUnavailable = errors.New("lazyfs: FUSE not available")
)

// FS is a mounted lazyfs.
type FS struct {
	backing, mountpoint string

	mu   sync.Mutex
	st   *state
	srv  *fuse.Server
	cuts int
	gone bool
}

// Available reports why FUSE mounts cannot be made here (needs root and
// /dev/fuse), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (euid %d)", ErrUnavailable, os.Geteuid())
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %v (Debian: apt-get install fuse3)", ErrUnavailable, err)
	}
	f.Close()
	return nil
}

// Mount mounts a lazyfs on mountpoint (an existing directory) over backing
// (an existing directory), whose content is taken as durable.
func Mount(backing, mountpoint string) (*FS, error) {
	for _, d := range []string{backing, mountpoint} {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("lazyfs: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("lazyfs: %s: %w", d, ErrNotDir)
		}
	}
	f := &FS{backing: backing, mountpoint: mountpoint}
	if err := f.boot(); err != nil {
		return nil, err
	}
	return f, nil
}

// boot builds the model from the backing directory and mounts it.
func (f *FS) boot() error {
	st, err := load(f.backing)
	if err != nil {
		return err
	}
	sec := time.Second
	root := &fnode{s: st, n: st.root}
	var srv *fuse.Server
	err = mountNoInherit(func() (err error) {
		srv, err = fs.Mount(f.mountpoint, root, &fs.Options{
			MountOptions: fuse.MountOptions{
				FsName:            "lazyfs",
				Name:              "lazyfs",
				DirectMountStrict: true, // as root, mount(2) itself: no fusermount process
				DisableXAttrs:     true,
			},
			EntryTimeout:    &sec,
			AttrTimeout:     &sec,
			NegativeTimeout: &sec,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("lazyfs: mounting %s: %w", f.mountpoint, err)
	}
	f.st, f.srv = st, srv
	return nil
}

// Mountpoint returns where the filesystem is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Backing returns the backing directory.
func (f *FS) Backing() string { return f.backing }

// Cuts returns how many power cuts were made.
func (f *FS) Cuts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cuts
}

// PowerCut simulates a power failure: it discards everything not synced,
// then unmounts and mounts again, so that the mount shows exactly the
// synced state. It kills nothing: with a file still open on the mount it
// returns ErrBusy and the power stays off (operations fail with EIO) until
// a later PowerCut succeeds.
func (f *FS) PowerCut() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return ErrUnmounted
	}
	f.st.powerOff()
	if f.srv != nil {
		if err := f.srv.Unmount(); err != nil {
			return fmt.Errorf("%w: %v", ErrBusy, err)
		}
		f.srv.Wait()
		f.srv = nil
	}
	f.cuts++
	return f.boot()
}

// Unmount writes everything back, as a clean unmount does, and unmounts.
// The backing directory then holds the mount's last state.
func (f *FS) Unmount() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return nil
	}
	if f.srv != nil {
		if err := f.srv.Unmount(); err != nil {
			return fmt.Errorf("%w: %v", ErrBusy, err)
		}
		f.srv.Wait()
		f.srv = nil
	}
	var syncErr error
	f.st.mu.Lock()
	if !f.st.off {
		syncErr = f.st.syncAll()
	}
	f.st.mu.Unlock()
	f.st.powerOff()
	f.gone = true
	if err := os.RemoveAll(filepath.Join(f.backing, OrphanDir)); err != nil && syncErr == nil {
		syncErr = fmt.Errorf("lazyfs: clearing the orphan area: %w", err)
	}
	if syncErr != nil {
		return fmt.Errorf("lazyfs: writing back at unmount: %w", syncErr)
	}
	return nil
}
