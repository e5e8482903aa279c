//go:build linux

package lazyfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Random writes, overlapping and at offsets, truncations, fsyncs and cuts
// on one file, checked against a plain model: reads see the current
// content, and after a cut exactly the content at the last fsync.
func TestRandomAgainstModel(t *testing.T) {
	f, _, mnt := setup(t)
	p := filepath.Join(mnt, "f")
	write(t, p, nil, 0, true)
	syncDir(t, mnt)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var cur, dur []byte
	h, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { h.Close() }()
	check := func(op int, what string) {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, cur) {
			t.Fatalf("op %d (%s): file holds %d bytes, model %d; first difference at %d", op, what, len(got), len(cur), firstDiff(got, cur))
		}
	}
	for op := range 600 {
		switch k := rng.IntN(20); {
		case k < 10:
			off := rng.IntN(4 * PageSize)
			data := make([]byte, 1+rng.IntN(2*PageSize))
			for i := range data {
				data[i] = byte('a' + rng.IntN(26))
			}
			if _, err := h.WriteAt(data, int64(off)); err != nil {
				t.Fatal(err)
			}
			if end := off + len(data); end > len(cur) {
				cur = append(cur, make([]byte, end-len(cur))...)
			}
			copy(cur[off:], data)
		case k < 13:
			n := rng.IntN(5 * PageSize)
			if err := h.Truncate(int64(n)); err != nil {
				t.Fatal(err)
			}
			if n <= len(cur) {
				cur = cur[:n]
			} else {
				cur = append(cur, make([]byte, n-len(cur))...)
			}
		case k < 16:
			if err := h.Sync(); err != nil {
				t.Fatal(err)
			}
			dur = append([]byte(nil), cur...)
		case k < 19:
			check(op, "read")
		default:
			h.Close()
			cut(t, f)
			cur = append([]byte(nil), dur...)
			check(op, "after a cut")
			if h, err = os.OpenFile(p, os.O_RDWR, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(600, "end")
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
