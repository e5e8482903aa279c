package smallcaps

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Decode errors. Each DecodeError wraps one of these, so callers can test
// the category with errors.Is.
var (
	// ErrNotSmallcaps: the body does not start with "#".
	ErrNotSmallcaps = errors.New("body is not smallcaps (no leading #)")
	// ErrBadJSON: the body after "#" is not one valid JSON value.
	ErrBadJSON = errors.New("body is not valid JSON")
	// ErrUnknownConstant: a string starting with "#" other than
	// "#undefined", "#NaN", "#Infinity" and "#-Infinity".
	ErrUnknownConstant = errors.New("unknown constant")
	// ErrReservedPrefix: a string starting with one of "'()*, (reserved
	// by smallcaps for future use).
	ErrReservedPrefix = errors.New("special character reserved for future use")
	// ErrSlotIndex: a "$i" or "&i" whose index is not a non-negative
	// integer below the number of slots.
	ErrSlotIndex = errors.New("bad slot index")
	// ErrSlotKind: one slot index used both as a remotable ("$") and as a
	// promise ("&").
	ErrSlotKind = errors.New("slot used as both remotable and promise")
	// ErrRecordKey: a record key starting with "#", or one that does not
	// decode to a string.
	ErrRecordKey = errors.New("bad record key")
	// ErrErrorName: an "#error" record without a name, or whose name is not
	// a string.
	ErrErrorName = errors.New("error record without a string name")
	// ErrBadValue: any other invalid encoding (a malformed bigint or
	// symbol, a bad "#tag" record, an error message that is not a string, …).
	ErrBadValue = errors.New("invalid encoding")
)

// ErrUnencodable is wrapped by every EncodeError: the Go value has no
// smallcaps encoding.
var ErrUnencodable = errors.New("value cannot be encoded")

// DecodeError reports what was wrong in a body, and where.
type DecodeError struct {
	// Path locates the bad part: "body", "body[1]", "body.key", ….
	Path string
	// Err is one of the Err… categories above.
	Err error
	// Detail says what was found.
	Detail string
}

func (e *DecodeError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("smallcaps: %v at %s", e.Err, e.Path)
	}
	return fmt.Sprintf("smallcaps: %v at %s: %s", e.Err, e.Path, e.Detail)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// EncodeError reports a Go value that cannot be encoded, and where.
type EncodeError struct {
	Path   string
	Detail string
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("smallcaps: %v at %s: %s", ErrUnencodable, e.Path, e.Detail)
}

func (e *EncodeError) Unwrap() error { return ErrUnencodable }

// path is the location of the value being handled, built only when an
// error is reported.
type path []string

func (p path) String() string {
	return "body" + strings.Join(p, "")
}

func (p path) index(i int) path { return append(p, "["+strconv.Itoa(i)+"]") }

func (p path) key(k string) path {
	simple := k != ""
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			simple = false
			break
		}
	}
	if simple {
		return append(p, "."+k)
	}
	return append(p, "["+strconv.Quote(k)+"]")
}

// quote shortens and quotes text shown in errors.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}
