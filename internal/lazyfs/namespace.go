//go:build linux

package lazyfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Namespace operations change only the current (volatile) namespace; the
// durable one changes in persistDir. Callers hold s.mu.

func (s *state) create(d *node, name string, dir bool, mode, uid, gid uint32) (*node, syscall.Errno) {
	if _, ok := d.kids[name]; ok {
		return nil, syscall.EEXIST
	}
	if d == s.root && name == OrphanDir {
		return nil, syscall.EPERM
	}
	n := s.newNode(dir, mode)
	n.uid, n.gid = uid, gid
	if err := s.makeHost(n); err != nil {
		return nil, toErrno(err)
	}
	n.parent, n.name = d, name
	d.kids[name] = n
	return n, 0
}

func (s *state) remove(d *node, name string, dir bool) syscall.Errno {
	n, ok := d.kids[name]
	switch {
	case !ok:
		return syscall.ENOENT
	case dir && !n.dir:
		return syscall.ENOTDIR
	case !dir && n.dir:
		return syscall.EISDIR
	case dir && len(n.kids) > 0:
		return syscall.ENOTEMPTY
	}
	delete(d.kids, name)
	n.parent = nil
	return 0
}

// Rename flags this filesystem implements.
const renameNoReplace = 1 // RENAME_NOREPLACE

func (s *state) rename(d *node, name string, to *node, newName string, flags uint32) syscall.Errno {
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL
	}
	n, ok := d.kids[name]
	if !ok {
		return syscall.ENOENT
	}
	if to == s.root && newName == OrphanDir {
		return syscall.EPERM
	}
	if n.dir {
		for a := to; a != nil; a = a.parent {
			if a == n {
				return syscall.EINVAL
			}
		}
	}
	if old, ok := to.kids[newName]; ok {
		switch {
		case old == n:
			return 0
		case flags&renameNoReplace != 0:
			return syscall.EEXIST
		case old.dir && !n.dir:
			return syscall.EISDIR
		case !old.dir && n.dir:
			return syscall.ENOTDIR
		case old.dir && len(old.kids) > 0:
			return syscall.ENOTEMPTY
		}
		old.parent = nil
	}
	delete(d.kids, name)
	to.kids[newName] = n
	n.parent, n.name = to, newName
	return 0
}

// persistDir makes d's entries durable: every node that is in d now or was
// in d at the last sync takes its current place in the durable namespace.
func (s *state) persistDir(d *node) error {
	var todo []*node
	for name, n := range d.kids {
		if n.dparent != d || n.dname != name {
			todo = append(todo, n)
		}
	}
	for name, n := range d.dkids {
		if n.parent != d || n.name != name {
			todo = append(todo, n)
		}
	}
	busy := map[*node]bool{}
	for _, n := range todo {
		if err := s.persist(n, busy); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) placed() bool {
	return n.dparent == n.parent && (n.parent == nil || n.dname == n.name)
}

// persist moves n's durable copy to n's current place. A node already at
// the target place is moved first (to its own current place); a node met
// again while it is being moved (renames in a cycle) is parked in the
// orphan area and placed when its turn comes back.
func (s *state) persist(n *node, busy map[*node]bool) error {
	if busy[n] {
		return s.hostMove(n, nil, "")
	}
	if n.placed() {
		return nil
	}
	busy[n] = true
	defer delete(busy, n)
	p := n.parent
	if p == nil {
		return s.hostMove(n, nil, "")
	}
	if old, ok := p.dkids[n.name]; ok && old != n {
		if err := s.persist(old, busy); err != nil {
			return err
		}
	}
	// A directory cannot move into its own durable subtree: first move out
	// what leads there.
	for range 64 {
		c := durableChildOnPath(n, p)
		if c == nil {
			break
		}
		if err := s.persist(c, busy); err != nil {
			return err
		}
		if c.dparent == n {
			return fmt.Errorf("lazyfs: cannot order the renames of node %d: %w", n.id, ErrUnsupported)
		}
	}
	return s.hostMove(n, p, n.name)
}

// durableChildOnPath returns the durable child of a on the durable path
// from the root to d, or nil if a is not a durable ancestor of d.
func durableChildOnPath(a, d *node) *node {
	for c := d; c != nil; c = c.dparent {
		if c.dparent == a {
			return c
		}
	}
	return nil
}

// hostMove moves n's durable copy to name in p (p nil: the orphan area).
func (s *state) hostMove(n *node, p *node, name string) error {
	if n.dparent == p && (p == nil || n.dname == name) {
		return nil
	}
	from := s.hostPath(n)
	var to string
	if p == nil {
		to = filepath.Join(s.backing, OrphanDir, strconv.FormatUint(n.id, 10))
	} else {
		to = filepath.Join(s.hostPath(p), name)
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if n.dparent != nil && n.dparent.dkids[n.dname] == n {
		delete(n.dparent.dkids, n.dname)
	}
	n.dparent, n.dname = p, name
	if p != nil {
		p.dkids[name] = n
	}
	return nil
}

// syncFile makes n's data and size durable.
func (s *state) syncFile(n *node) error {
	f, err := s.hostFile(n)
	if err != nil {
		return err
	}
	return n.data.sync(f)
}

// syncAll makes the whole current state durable, as a clean unmount does.
func (s *state) syncAll() error {
	seen := map[*node]bool{}
	var walk func(d *node) error
	walk = func(d *node) error {
		if err := s.persistDir(d); err != nil {
			return err
		}
		for _, n := range d.kids {
			if seen[n] {
				continue
			}
			seen[n] = true
			var err error
			if n.dir {
				err = walk(n)
			} else {
				err = s.syncFile(n)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return walk(s.root)
}

func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if e, ok := err.(*os.PathError); ok {
		err = e.Err
	}
	if e, ok := err.(*os.LinkError); ok {
		err = e.Err
	}
	if e, ok := err.(syscall.Errno); ok {
		errno = e
	} else {
		errno = syscall.EIO
	}
	return errno
}
