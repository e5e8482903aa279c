package smallcaps

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
)

// isJSSpace reports whether r is white space or a line terminator to
// JavaScript's string-to-number conversions (ECMA-262 StrWhiteSpaceChar).
func isJSSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0xA0, 0xFEFF, 0x2028, 0x2029:
		return true
	}
	return unicode.Is(unicode.Zs, r)
}

// jsStringToNumber reads s as JavaScript's Number(s) does, for text that
// holds no "." (a slot index is cut at the first one): surrounding white
// space is ignored, "" is 0, 0x/0o/0b prefixes give other bases, and a
// decimal may have a sign and an exponent. ok is false where Number(s)
// would be NaN.
func jsStringToNumber(s string) (f float64, ok bool) {
	s = strings.TrimFunc(s, isJSSpace)
	if s == "" {
		return 0, true
	}
	if len(s) > 2 && s[0] == '0' {
		base := 0
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 0 {
			n, ok := new(big.Int).SetString(s[2:], base)
			if !ok || strings.ContainsAny(s[2:], "_+-") {
				return 0, false
			}
			f, _ := new(big.Float).SetInt(n).Float64()
			return f, true
		}
	}
	body := s
	if body[0] == '+' || body[0] == '-' {
		body = body[1:]
	}
	if body == "Infinity" {
		if s[0] == '-' {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	}
	mant, exp, hasExp := strings.Cut(body, "e")
	if !hasExp {
		mant, exp, hasExp = strings.Cut(body, "E")
	}
	if !allDigits(mant) {
		return 0, false
	}
	if hasExp {
		if exp != "" && (exp[0] == '+' || exp[0] == '-') {
			exp = exp[1:]
		}
		if !allDigits(exp) {
			return 0, false
		}
	}
	f, _ = strconv.ParseFloat(s, 64)
	return f, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
