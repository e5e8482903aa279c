package jsjson

import "unicode/utf8"

// AppendString appends s as a JSON string literal the way JavaScript's
// JSON.stringify writes it: only '"', '\\' and control characters are
// escaped (\b \f \n \r \t by name, the others as \u00xx); there is no HTML
// escaping and U+2028/U+2029 are written raw. Invalid UTF-8 becomes U+FFFD,
// since a JavaScript string cannot hold it; callers that must not change a
// value check utf8.ValidString first.
func AppendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				b = append(b, '\\', '"')
			case c == '\\':
				b = append(b, '\\', '\\')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// LessUTF16 reports whether a sorts before b when both are compared as
// sequences of UTF-16 code units, which is how JavaScript's default
// Array.prototype.sort orders strings. It differs from Go's byte order
// (code point order) only when a character above U+FFFF meets one from
// U+E000 to U+FFFF: the former's leading surrogate (U+D800–U+DBFF) sorts
// first. Invalid UTF-8 bytes compare as U+FFFD.
func LessUTF16(a, b string) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			return firstUnit(ra) < firstUnit(rb) || (firstUnit(ra) == firstUnit(rb) && ra < rb)
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b != ""
}

// firstUnit is the first UTF-16 code unit of r.
func firstUnit(r rune) rune {
	if r >= 0x10000 {
		return 0xD800 + (r-0x10000)>>10
	}
	return r
}
