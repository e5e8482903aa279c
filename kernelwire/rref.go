package kernelwire

import (
	"errors"
	"fmt"
	"strconv"
)

// Kind is what a reference names: an object or a promise.
type Kind uint8

const (
	Object  Kind = 'o'
	Promise Kind = 'p'
)

func (k Kind) String() string {
	switch k {
	case Object:
		return "object"
	case Promise:
		return "promise"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Side says who allocated a reference's number.
type Side uint8

const (
	// Local: this endpoint allocated it (an export).
	Local Side = iota + 1
	// Remote: the peer allocated it (an import).
	Remote
)

// MaxRefNumber is the largest allocation number: JavaScript's
// Number.MAX_SAFE_INTEGER, beyond which its counters cannot count.
const MaxRefNumber = 1<<53 - 1

// RRef is a remote reference as it appears in one frame: r, the kind, the
// sign and the allocator's number, e.g. "ro+1" or "rp-3".
type RRef struct {
	Kind Kind
	// Plus is the sign: true for "+" (allocated by the frame's sender).
	Plus bool
	// N is the allocator's number, from 1.
	N uint64
}

// ErrBadRRef is wrapped by ParseRRef's errors.
var ErrBadRRef = errors.New("not an RRef")

// ParseRRef reads "r" "o"|"p" "+"|"-" and a decimal number from 1 to
// MaxRefNumber without leading zeros. The JavaScript kernel's pattern,
// ^r[op][+-]\d+$, also admits leading zeros and 0; it never writes them,
// and since it looks references up as text, "ro+01" would not be "ro+1"
// there, so they are refused here.
func ParseRRef(s string) (RRef, error) {
	if len(s) < 4 || s[0] != 'r' || (s[1] != 'o' && s[1] != 'p') || (s[2] != '+' && s[2] != '-') {
		return RRef{}, fmt.Errorf("%w: %q (want ro+N, ro-N, rp+N or rp-N)", ErrBadRRef, truncate(s))
	}
	digits := s[3:]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return RRef{}, fmt.Errorf("%w: %q has a non-digit after the sign", ErrBadRRef, truncate(s))
		}
	}
	if digits[0] == '0' {
		return RRef{}, fmt.Errorf("%w: %q: the number must start with 1-9", ErrBadRRef, truncate(s))
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > MaxRefNumber {
		return RRef{}, fmt.Errorf("%w: %q: number beyond 2^53-1", ErrBadRRef, truncate(s))
	}
	return RRef{Kind: Kind(s[1]), Plus: s[2] == '+', N: n}, nil
}

// MustParseRRef is ParseRRef for constants; it panics on bad input.
func MustParseRRef(s string) RRef {
	r, err := ParseRRef(s)
	if err != nil {
		panic(err)
	}
	return r
}

// OutRef returns the reference to write in an outgoing frame for allocation
// n of kind k made by side by: "+" for this endpoint's own, "-" for the
// peer's.
func OutRef(k Kind, by Side, n uint64) RRef { return RRef{Kind: k, Plus: by == Local, N: n} }

// AllocatedBy says who allocated r when r arrives in a frame from the
// peer: "+" is the peer's allocation (Remote), "-" this endpoint's
// (Local). (For a reference in an outgoing frame the answer is the
// opposite.)
func (r RRef) AllocatedBy() Side {
	if r.Plus {
		return Remote
	}
	return Local
}

// Inverted returns r with the other sign.
func (r RRef) Inverted() RRef { r.Plus = !r.Plus; return r }

// String writes r as the JavaScript kernel does, e.g. "ro+1".
func (r RRef) String() string { return string(r.append(nil)) }

func (r RRef) append(b []byte) []byte {
	sign := byte('-')
	if r.Plus {
		sign = '+'
	}
	b = append(b, 'r', byte(r.Kind), sign)
	return strconv.AppendUint(b, r.N, 10)
}

// valid reports why r cannot be written, or "".
func (r RRef) valid() string {
	if r.Kind != Object && r.Kind != Promise {
		return fmt.Sprintf("reference kind %d is neither object nor promise", r.Kind)
	}
	if r.N == 0 || r.N > MaxRefNumber {
		return fmt.Sprintf("reference number %d out of range 1..2^53-1", r.N)
	}
	return ""
}

func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
