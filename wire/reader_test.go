package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

func frames(n, size int) ([]byte, [][]byte) {
	var stream []byte
	var want [][]byte
	for i := range n {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size+i%7)
		want = append(want, p)
		stream = AppendFrame(stream, p)
	}
	return stream, want
}

// Frames come out whole and in order however the stream splits its data.
func TestReaderSplits(t *testing.T) {
	stream, want := frames(300, 700)
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"halves":   iotest.HalfReader,
		"data+err": iotest.DataErrReader,
	} {
		r := NewReader(wrap(bytes.NewReader(stream)), 0)
		for i, w := range want {
			got, err := r.ReadFrame()
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("%s: frame %d: %d bytes, %v", name, i, len(got), err)
			}
		}
		if _, err := r.ReadFrame(); err != io.EOF {
			t.Fatalf("%s: after the last frame: %v, want io.EOF", name, err)
		}
	}
}

// A busy stream borrows a large buffer; once it goes quiet the buffer goes
// back, so an idle channel holds only the small one.
func TestReaderGivesBackBusyBuffer(t *testing.T) {
	stream, want := frames(200, 300)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(stream) // one big burst
		pw.Write(AppendFrame(nil, []byte("quiet")))
	}()
	r := NewReader(pr, 0)
	sawBusy := false
	for i := range want {
		if _, err := r.ReadFrame(); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		sawBusy = sawBusy || r.busy != nil
	}
	got, err := r.ReadFrame()
	if err != nil || string(got) != "quiet" {
		t.Fatalf("last frame %q %v", got, err)
	}
	if !sawBusy {
		t.Error("a burst of 60 KiB was read with the small buffer only")
	}
	if r.busy != nil {
		t.Error("the busy buffer is still held after the stream went quiet")
	}
	pw.Close()
}

// A large frame announced but not sent is not allocated ahead.
func TestReaderLargeFrameGrowsWithData(t *testing.T) {
	payload := bytes.Repeat([]byte("z"), 900<<10)
	stream := AppendFrame(nil, payload)
	r := NewReader(iotest.HalfReader(bytes.NewReader(stream)), 0)
	got, err := r.ReadFrame()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("large frame: %d bytes, %v", len(got), err)
	}
	r = NewReader(bytes.NewReader(stream[:1000]), 0)
	if _, err := r.ReadFrame(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated large frame: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	if _, err := NewReader(zeroReader{}, 0).ReadFrame(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("a reader that returns nothing: %v", err)
	}
}

func BenchmarkReadFrames(b *testing.B) {
	for _, size := range []int{100, 4096} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			stream, _ := frames(1000, size)
			b.SetBytes(int64(len(stream)))
			for range b.N {
				r := NewReader(bytes.NewReader(stream), 0)
				for {
					if _, err := r.ReadFrame(); err != nil {
						break
					}
				}
			}
		})
	}
}
