//go:build unix

package bench

import (
	"encoding/binary"
	"os"
	"syscall"
)

// txidReader reads the last committed transaction ID of a bbolt file from
// its two meta pages, through a read-only shared mapping (no system call per
// read): a Send that returned was committed by a transaction no later than
// the one read just after it.
type txidReader struct {
	mem      []byte
	pageSize int
}

func openTxidReader(path string) (*txidReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hdr [32]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, err
	}
	// Page header (16 bytes), then meta: magic, version, pageSize (uint32 each).
	ps := int(binary.LittleEndian.Uint32(hdr[24:]))
	if ps < 512 || ps > 1<<16 {
		return nil, errBadMeta
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 2*ps, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &txidReader{mem: mem, pageSize: ps}, nil
}

// txid is the larger of the two meta pages' transaction IDs (offset 64 of
// each page: after the page header, magic, version, page size, flags, root
// bucket, freelist and page count).
func (r *txidReader) txid() uint64 {
	a := binary.LittleEndian.Uint64(r.mem[64:])
	b := binary.LittleEndian.Uint64(r.mem[r.pageSize+64:])
	return max(a, b)
}

func (r *txidReader) close() { _ = syscall.Munmap(r.mem) }
