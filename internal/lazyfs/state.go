//go:build linux

package lazyfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// OrphanDir is the directory in the backing directory's root that holds
// the synced data of files and directories with no durable name. It is
// deleted at every mount, PowerCut and Unmount, and it cannot be created
// through the mount.
const OrphanDir = ".lazyfs-orphans"

// node is one file or directory of the model. Its current place in the
// namespace (parent, name) may differ from its durable place (dparent,
// dname) until a directory involved is fsync'd.
type node struct {
	id  uint64
	dir bool

	mode       uint32 // permission bits
	uid, gid   uint32
	mtime      time.Time
	parent     *node            // current; nil: unlinked (or the root)
	name       string           // current
	kids       map[string]*node // directories: current entries
	dparent    *node            // durable; nil: none, the host copy is in the orphan area
	dname      string           // durable
	dkids      map[string]*node // directories: durable entries
	file       *os.File         // files: the host file, opened on first use
	data       overlay          // files: the volatile data
	hostExists bool             // the host copy exists (always, once made)
}

// state is the model of one power-on period. Every operation holds mu; once
// off is set (the power was cut) every operation fails with EIO and nothing
// reaches the backing directory any more.
type state struct {
	mu      sync.Mutex
	backing string
	root    *node
	nextID  uint64
	off     bool
	opened  map[*node]bool // nodes whose host file is open
}

func (s *state) newNode(dir bool, mode uint32) *node {
	s.nextID++
	n := &node{id: s.nextID, dir: dir, mode: mode & 0o7777, mtime: time.Now()}
	if dir {
		n.kids, n.dkids = map[string]*node{}, map[string]*node{}
	}
	return n
}

// load builds the model from the backing directory: what is there is both
// the current and the durable state.
func load(backing string) (*state, error) {
	s := &state{backing: backing, opened: map[*node]bool{}}
	if err := os.RemoveAll(filepath.Join(backing, OrphanDir)); err != nil {
		return nil, fmt.Errorf("lazyfs: clearing the orphan area: %w", err)
	}
	fi, err := os.Stat(backing)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: backing directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("lazyfs: backing %s: %w", backing, ErrNotDir)
	}
	s.root = s.newNode(true, uint32(fi.Mode().Perm()))
	setOwner(s.root, fi)
	if err := s.loadDir(s.root, backing); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(backing, OrphanDir), 0o700); err != nil {
		return nil, fmt.Errorf("lazyfs: orphan area: %w", err)
	}
	return s, nil
}

func (s *state) loadDir(d *node, path string) error {
	entries, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("lazyfs: reading %s: %w", path, err)
	}
	for _, e := range entries {
		if d == s.root && e.Name() == OrphanDir {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("lazyfs: %s: %w", filepath.Join(path, e.Name()), err)
		}
		var n *node
		switch {
		case fi.IsDir():
			n = s.newNode(true, uint32(fi.Mode().Perm()))
			if err := s.loadDir(n, filepath.Join(path, e.Name())); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			n = s.newNode(false, uint32(fi.Mode().Perm()))
			n.data.reset(fi.Size())
		default:
			return fmt.Errorf("lazyfs: %s: %w (%v)", filepath.Join(path, e.Name()), ErrUnsupported, fi.Mode().Type())
		}
		setOwner(n, fi)
		n.mtime = fi.ModTime()
		n.hostExists = true
		n.parent, n.name, n.dparent, n.dname = d, e.Name(), d, e.Name()
		d.kids[e.Name()], d.dkids[e.Name()] = n, n
	}
	return nil
}

func setOwner(n *node, fi os.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.uid, n.gid = st.Uid, st.Gid
	}
}

// hostPath is where n's durable copy is in the backing directory.
func (s *state) hostPath(n *node) string {
	switch {
	case n == s.root:
		return s.backing
	case n.dparent == nil:
		return filepath.Join(s.backing, OrphanDir, strconv.FormatUint(n.id, 10))
	}
	return filepath.Join(s.hostPath(n.dparent), n.dname)
}

// makeHost creates n's (empty) durable copy in the orphan area.
func (s *state) makeHost(n *node) error {
	p := s.hostPath(n)
	if n.dir {
		if err := os.Mkdir(p, os.FileMode(n.mode)|0o700); err != nil {
			return err
		}
	} else {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, os.FileMode(n.mode)|0o600)
		if err != nil {
			return err
		}
		n.file = f
		s.opened[n] = true
	}
	n.hostExists = true
	return os.Chown(p, int(n.uid), int(n.gid))
}

// hostFile returns n's open host file.
func (s *state) hostFile(n *node) (*os.File, error) {
	if n.file == nil {
		f, err := os.OpenFile(s.hostPath(n), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		n.file = f
		s.opened[n] = true
	}
	return n.file, nil
}

// powerOff ends this power-on period: the volatile layer is dropped and
// every later operation fails.
func (s *state) powerOff() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off {
		return
	}
	s.off = true
	s.closeFiles()
}

func (s *state) closeFiles() {
	for n := range s.opened {
		n.file.Close()
		n.file = nil
	}
	clear(s.opened)
}
