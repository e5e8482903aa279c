// Package wire is the byte format of the ocap-kernel `whatever` stream
// (reference §2): unsigned-varint length-prefixed frames, the handshake that
// exchanges incarnation IDs, and the sequenced application envelope with its
// standalone acknowledgement.
//
// The package is pure: it reads from an io.Reader and writes to an
// io.Writer, and it never interprets the application's `method` and `params`,
// which it carries verbatim. Encoders produce exactly the bytes the
// JavaScript kernel writes (JSON.stringify output, keys in upstream's order),
// so Go and JavaScript peers can talk.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtocolID is the libp2p protocol ID of the ocap-kernel stream: the literal
// string "whatever", with no slash and no version (reference §2.1).
const ProtocolID = "whatever"

// DefaultMaxMessageSize is the largest frame payload accepted by default,
// upstream's maxMessageSizeBytes (1 MiB).
const DefaultMaxMessageSize = 1 << 20

var (
	// ErrFrameTooLarge: the length prefix announces more than the maximum
	// payload size.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrPrefixTooLong: the length prefix has more bytes than the encoding
	// of the maximum size needs (upstream's maxLengthLength).
	ErrPrefixTooLong = errors.New("frame length prefix too long")
	// ErrTruncated: the stream ended inside a length prefix or a payload.
	ErrTruncated = errors.New("stream ended inside a frame")
)

// FrameError describes a framing error. It wraps one of ErrFrameTooLarge,
// ErrPrefixTooLong or ErrTruncated, so errors.Is works on it, and errors.As
// gives the details.
type FrameError struct {
	Err    error  // the sentinel
	Length uint64 // announced payload length (ErrFrameTooLarge, ErrTruncated in a payload)
	Read   int    // payload bytes read before the end (ErrTruncated)
	Max    int    // the maximum payload size in force
}

func (e *FrameError) Error() string {
	switch e.Err {
	case ErrFrameTooLarge:
		return fmt.Sprintf("%v: length %d exceeds the limit of %d bytes", e.Err, e.Length, e.Max)
	case ErrPrefixTooLong:
		return fmt.Sprintf("%v: more than %d bytes for a limit of %d bytes", e.Err, PrefixLimit(e.Max), e.Max)
	case ErrTruncated:
		if e.Length == 0 && e.Read == 0 {
			return fmt.Sprintf("%v: inside the length prefix", e.Err)
		}
		return fmt.Sprintf("%v: %d of %d payload bytes received", e.Err, e.Read, e.Length)
	}
	return e.Err.Error()
}

// Unwrap returns the sentinel error.
func (e *FrameError) Unwrap() error { return e.Err }

// PrefixLimit returns the most bytes a length prefix may have for frames of
// at most maxSize bytes: the length of maxSize's own varint encoding, as
// upstream's lpStream derives maxLengthLength (3 for 1 MiB). maxSize <= 0
// means DefaultMaxMessageSize.
func PrefixLimit(maxSize int) int {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], uint64(maxSize))
}

// AppendFrame appends the frame for payload (varint length, then the
// payload) to dst and returns the extended slice.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(payload)))
	return append(dst, payload...)
}

// WriteFrame writes payload as one frame with a single Write call, as
// upstream's lpStream does, so a frame is never interleaved with another
// writer's bytes by a muxer that preserves writes.
func WriteFrame(w io.Writer, payload []byte) error {
	buf := AppendFrame(make([]byte, 0, len(payload)+binary.MaxVarintLen64), payload)
	_, err := w.Write(buf)
	return err
}
