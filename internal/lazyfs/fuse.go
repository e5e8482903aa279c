//go:build linux

package lazyfs

import (
	"context"
	"sort"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fnode is the FUSE face of a model node. A node may get a new fnode after
// the kernel forgot the old one; the inode number (the node's id) is what
// identifies it.
type fnode struct {
	fs.Inode
	s *state
	n *node
}

var (
	_ fs.NodeLookuper  = (*fnode)(nil)
	_ fs.NodeGetattrer = (*fnode)(nil)
	_ fs.NodeSetattrer = (*fnode)(nil)
	_ fs.NodeOpener    = (*fnode)(nil)
	_ fs.NodeCreater   = (*fnode)(nil)
	_ fs.NodeReader    = (*fnode)(nil)
	_ fs.NodeWriter    = (*fnode)(nil)
	_ fs.NodeFsyncer   = (*fnode)(nil)
	_ fs.NodeFlusher   = (*fnode)(nil)
	_ fs.NodeMkdirer   = (*fnode)(nil)
	_ fs.NodeUnlinker  = (*fnode)(nil)
	_ fs.NodeRmdirer   = (*fnode)(nil)
	_ fs.NodeRenamer   = (*fnode)(nil)
	_ fs.NodeReaddirer = (*fnode)(nil)
	_ fs.NodeStatfser  = (*fnode)(nil)
)

// lock takes the state's lock; it fails with EIO once the power is off.
func (f *fnode) lock() syscall.Errno {
	f.s.mu.Lock()
	if f.s.off {
		f.s.mu.Unlock()
		return syscall.EIO
	}
	return 0
}

func (f *fnode) unlock() { f.s.mu.Unlock() }

func (f *fnode) child(ctx context.Context, n *node, out *fuse.EntryOut) *fs.Inode {
	fillAttr(n, &out.Attr)
	mode := uint32(syscall.S_IFREG)
	if n.dir {
		mode = syscall.S_IFDIR
	}
	return f.NewInode(ctx, &fnode{s: f.s, n: n}, fs.StableAttr{Mode: mode, Ino: n.id})
}

func fillAttr(n *node, a *fuse.Attr) {
	a.Ino = n.id
	a.Mode = n.mode
	a.Nlink = 1
	if n.dir {
		a.Mode |= syscall.S_IFDIR
		a.Nlink = 2
		a.Size = 4096
	} else {
		a.Mode |= syscall.S_IFREG
		a.Size = uint64(n.data.size)
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = PageSize
	a.Uid, a.Gid = n.uid, n.gid
	a.SetTimes(&n.mtime, &n.mtime, &n.mtime)
}

func (f *fnode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := f.lock(); e != 0 {
		return nil, e
	}
	defer f.unlock()
	n, ok := f.n.kids[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	return f.child(ctx, n, out), 0
}

func (f *fnode) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if e := f.lock(); e != 0 {
		return e
	}
	defer f.unlock()
	fillAttr(f.n, &out.Attr)
	return 0
}

func (f *fnode) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := f.lock(); e != 0 {
		return e
	}
	defer f.unlock()
	n := f.n
	if size, ok := in.GetSize(); ok {
		if n.dir {
			return syscall.EISDIR
		}
		if e := f.truncate(int64(size)); e != 0 {
			return e
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := chmod(f.s.hostPath(n), mode&0o7777); err != nil {
			return toErrno(err)
		}
		n.mode = mode & 0o7777
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		if !uok {
			uid = n.uid
		}
		if !gok {
			gid = n.gid
		}
		if err := chown(f.s.hostPath(n), uid, gid); err != nil {
			return toErrno(err)
		}
		n.uid, n.gid = uid, gid
	}
	if t, ok := in.GetMTime(); ok {
		n.mtime = t
	}
	fillAttr(n, &out.Attr)
	return 0
}

func (f *fnode) truncate(size int64) syscall.Errno {
	host, err := f.s.hostFile(f.n)
	if err != nil {
		return toErrno(err)
	}
	if err := f.n.data.truncate(host, size); err != nil {
		return toErrno(err)
	}
	f.n.mtime = time.Now()
	return 0
}

func (f *fnode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := f.lock(); e != 0 {
		return nil, 0, e
	}
	defer f.unlock()
	if flags&syscall.O_TRUNC != 0 && !f.n.dir {
		if e := f.truncate(0); e != 0 {
			return nil, 0, e
		}
	}
	return nil, 0, 0
}

func (f *fnode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := f.lock(); e != 0 {
		return nil, nil, 0, e
	}
	defer f.unlock()
	uid, gid := caller(ctx)
	n, e := f.s.create(f.n, name, false, mode, uid, gid)
	if e != 0 {
		return nil, nil, 0, e
	}
	return f.child(ctx, n, out), nil, 0, 0
}

func (f *fnode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := f.lock(); e != 0 {
		return nil, e
	}
	defer f.unlock()
	uid, gid := caller(ctx)
	n, e := f.s.create(f.n, name, true, mode, uid, gid)
	if e != 0 {
		return nil, e
	}
	return f.child(ctx, n, out), 0
}

func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

func (f *fnode) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := f.lock(); e != 0 {
		return nil, e
	}
	defer f.unlock()
	host, err := f.s.hostFile(f.n)
	if err != nil {
		return nil, toErrno(err)
	}
	n, err := f.n.data.read(host, dest, off)
	if err != nil {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *fnode) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if e := f.lock(); e != 0 {
		return 0, e
	}
	defer f.unlock()
	host, err := f.s.hostFile(f.n)
	if err != nil {
		return 0, toErrno(err)
	}
	if err := f.n.data.write(host, data, off); err != nil {
		return 0, toErrno(err)
	}
	f.n.mtime = time.Now()
	return uint32(len(data)), 0
}

// Fsync serves fsync and fdatasync of files and directories alike: a file's
// data and size, or a directory's entries, become durable.
func (f *fnode) Fsync(ctx context.Context, _ fs.FileHandle, flags uint32) syscall.Errno {
	if e := f.lock(); e != 0 {
		return e
	}
	defer f.unlock()
	if f.n.dir {
		return toErrno(f.s.persistDir(f.n))
	}
	return toErrno(f.s.syncFile(f.n))
}

func (f *fnode) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno { return 0 }

func (f *fnode) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := f.lock(); e != 0 {
		return e
	}
	defer f.unlock()
	return f.s.remove(f.n, name, false)
}

func (f *fnode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := f.lock(); e != 0 {
		return e
	}
	defer f.unlock()
	return f.s.remove(f.n, name, true)
}

func (f *fnode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to, ok := newParent.(*fnode)
	if !ok {
		return syscall.EXDEV
	}
	if e := f.lock(); e != 0 {
		return e
	}
	defer f.unlock()
	return f.s.rename(f.n, name, to.n, newName, flags)
}

func (f *fnode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if e := f.lock(); e != 0 {
		return nil, e
	}
	defer f.unlock()
	list := make([]fuse.DirEntry, 0, len(f.n.kids))
	for name, n := range f.n.kids {
		mode := uint32(syscall.S_IFREG)
		if n.dir {
			mode = syscall.S_IFDIR
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: mode, Ino: n.id})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return fs.NewListDirStream(list), 0
}

func (f *fnode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.s.backing, &st); err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

func chmod(path string, mode uint32) error { return syscall.Chmod(path, mode) }

func chown(path string, uid, gid uint32) error { return syscall.Chown(path, int(uid), int(gid)) }
