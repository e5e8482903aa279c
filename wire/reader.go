package wire

import (
	"io"
	"sync"
)

// Buffer sizes of a Reader: an idle stream holds only idleBuffer bytes
// (what a blocked read of the next frame needs); a busy one borrows a
// busyBuffer from a process-wide pool, so many frames come in one read, and
// gives it back as soon as the stream goes quiet. A node with thousands of
// idle channels therefore does not hold thousands of large buffers.
const (
	idleBuffer = 512
	busyBuffer = 64 << 10
	// payloadChunk is how much of a large payload is allocated ahead of the
	// data: a peer that announces a big frame and sends it slowly costs
	// what it has sent, not what it announced.
	payloadChunk = 64 << 10
)

var busyPool = sync.Pool{New: func() any { b := make([]byte, busyBuffer); return &b }}

// Reader reads frames from a stream. It buffers its input, so once a stream
// is wrapped in a Reader every later read of that stream must go through the
// same Reader. It is not safe for concurrent use.
type Reader struct {
	r      io.Reader
	max    int
	prefix int
	err    error // sticky error of r, returned once the buffer is drained

	empty int // consecutive reads that returned nothing

	idle       [idleBuffer]byte
	busy       *[]byte // borrowed from busyPool while the stream is busy, else nil
	buf        []byte  // idle[:] or *busy
	start, end int     // buffered bytes are buf[start:end]
}

// NewReader returns a Reader of frames of at most maxSize payload bytes
// (maxSize <= 0 means DefaultMaxMessageSize).
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	rd := &Reader{r: r, max: maxSize, prefix: PrefixLimit(maxSize)}
	rd.buf = rd.idle[:]
	return rd
}

// fill reads more input into the buffer. It is called only when the buffer
// is empty. A read that fills the whole idle buffer means the stream is
// busy: the next reads use a pooled busy buffer. A read that leaves a busy
// buffer mostly empty means it is quiet again: the busy buffer goes back to
// the pool once drained.
func (r *Reader) fill() error {
	if r.err != nil {
		return r.err
	}
	r.start, r.end = 0, 0
	n, err := r.r.Read(r.buf)
	r.end = n
	if n == 0 && err == nil {
		if r.empty++; r.empty >= 100 {
			r.err = io.ErrNoProgress
			return r.err
		}
		return nil
	}
	r.empty = 0
	if err != nil {
		r.err = err
		if n > 0 {
			err = nil
		}
	}
	switch {
	case r.busy == nil && n == len(r.buf):
		r.busy = busyPool.Get().(*[]byte)
		r.buf = append((*r.busy)[:0], r.buf[:n]...)[:busyBuffer]
	case r.busy != nil && n < idleBuffer:
		r.buf = r.idle[:]
		copy(r.buf, (*r.busy)[:n])
		busyPool.Put(r.busy)
		r.busy = nil
	}
	return err
}

func (r *Reader) readByte() (byte, error) {
	for r.start == r.end {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	b := r.buf[r.start]
	r.start++
	return b, nil
}

// ReadFrame reads one frame and returns its payload in a new slice. It
// returns io.EOF only when the stream ends cleanly between frames, and a
// *FrameError for an oversize length, an over-long prefix or an end inside a
// frame; other errors come from the underlying reader. After an error the
// framing is lost and the stream must not be read further.
func (r *Reader) ReadFrame() ([]byte, error) {
	var length uint64
	for i := 0; ; i++ {
		if i == r.prefix {
			return nil, &FrameError{Err: ErrPrefixTooLong, Max: r.max}
		}
		b, err := r.readByte()
		if err != nil {
			if err == io.EOF {
				if i == 0 {
					return nil, io.EOF
				}
				return nil, &FrameError{Err: ErrTruncated, Max: r.max}
			}
			return nil, err
		}
		length |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			break
		}
	}
	if length > uint64(r.max) {
		return nil, &FrameError{Err: ErrFrameTooLarge, Length: length, Max: r.max}
	}
	payload := make([]byte, 0, min(length, payloadChunk))
	for uint64(len(payload)) < length {
		if r.start == r.end {
			if err := r.fill(); err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return nil, &FrameError{Err: ErrTruncated, Length: length, Read: len(payload), Max: r.max}
				}
				return nil, err
			}
			continue
		}
		take := min(uint64(r.end-r.start), length-uint64(len(payload)))
		payload = append(payload, r.buf[r.start:r.start+int(take)]...)
		r.start += int(take)
	}
	if r.start == r.end && r.busy != nil && r.err != nil {
		busyPool.Put(r.busy)
		r.busy, r.buf = nil, r.idle[:]
	}
	return payload, nil
}

// Close gives a borrowed buffer back to the pool. The Reader must not be
// used afterwards. Calling it is optional (an abandoned buffer is collected).
func (r *Reader) Close() {
	if r.busy != nil {
		busyPool.Put(r.busy)
		r.busy = nil
	}
	r.buf = nil
}

// Buffered returns how many bytes are buffered: 0 means the next ReadFrame
// reads from the stream.
func (r *Reader) Buffered() int { return r.end - r.start }
