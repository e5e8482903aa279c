//go:build linux

package lazyfs

import (
	"io"
	"os"
)

// PageSize is the granularity of the volatile layer: a write makes the
// pages it touches volatile copies, and a sync writes whole pages back.
const PageSize = 4096

// overlay is a file's volatile data over its durable host copy. The
// current content is: pages[i] for a page in the map; else the host copy
// below low (the size at the last sync, lowered by truncations since);
// else zeros, up to size. Bytes of a page beyond size are zero.
type overlay struct {
	size  int64
	low   int64
	pages map[int64][]byte
}

// reset makes the overlay empty over a host copy of size n.
func (o *overlay) reset(n int64) {
	o.size, o.low, o.pages = n, n, nil
}

// page fills buf (PageSize bytes) with the current content of page i.
func (o *overlay) page(host *os.File, i int64, buf []byte) error {
	if p, ok := o.pages[i]; ok {
		copy(buf, p)
		return nil
	}
	clear(buf)
	start := i * PageSize
	if start >= o.low {
		return nil
	}
	n := min(int64(PageSize), o.low-start)
	if _, err := host.ReadAt(buf[:n], start); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// read copies the current content at off into dest and returns how many
// bytes there were.
func (o *overlay) read(host *os.File, dest []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, nil
	}
	end := min(off+int64(len(dest)), o.size)
	buf := make([]byte, PageSize)
	done := 0
	for pos := off; pos < end; {
		i := pos / PageSize
		if err := o.page(host, i, buf); err != nil {
			return done, err
		}
		from := pos - i*PageSize
		n := copy(dest[done:end-off], buf[from:])
		done += n
		pos += int64(n)
	}
	return done, nil
}

// writable returns page i as a volatile copy, making it from the current
// content unless the caller overwrites it whole.
func (o *overlay) writable(host *os.File, i int64, whole bool) ([]byte, error) {
	if p, ok := o.pages[i]; ok {
		return p, nil
	}
	p := make([]byte, PageSize)
	if !whole {
		if err := o.page(host, i, p); err != nil {
			return nil, err
		}
	}
	if o.pages == nil {
		o.pages = map[int64][]byte{}
	}
	o.pages[i] = p
	return p, nil
}

func (o *overlay) write(host *os.File, data []byte, off int64) error {
	for done := 0; done < len(data); {
		pos := off + int64(done)
		i, from := pos/PageSize, pos%PageSize
		n := min(len(data)-done, int(PageSize-from))
		p, err := o.writable(host, i, from == 0 && n == PageSize)
		if err != nil {
			return err
		}
		copy(p[from:], data[done:done+n])
		done += n
	}
	o.size = max(o.size, off+int64(len(data)))
	return nil
}

func (o *overlay) truncate(host *os.File, n int64) error {
	if n >= o.size {
		o.size = n
		return nil
	}
	for i := range o.pages {
		if i*PageSize >= n {
			delete(o.pages, i)
		}
	}
	if from := n % PageSize; from != 0 {
		p, err := o.writable(host, n/PageSize, false)
		if err != nil {
			return err
		}
		clear(p[from:])
	}
	o.size, o.low = n, min(o.low, n)
	return nil
}

// sync writes the current content to the host copy.
func (o *overlay) sync(host *os.File) error {
	if o.low < o.size || len(o.pages) > 0 {
		// Bytes of the host copy at or beyond low are stale.
		if err := host.Truncate(o.low); err != nil {
			return err
		}
		for i, p := range o.pages {
			n := min(int64(PageSize), o.size-i*PageSize)
			if _, err := host.WriteAt(p[:n], i*PageSize); err != nil {
				return err
			}
		}
	}
	if err := host.Truncate(o.size); err != nil {
		return err
	}
	o.reset(o.size)
	return nil
}
