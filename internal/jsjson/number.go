package jsjson

import (
	"math"
	"strconv"
)

// AppendNumber appends f as ECMAScript's Number::toString(f) writes it
// (ECMA-262 §6.1.6.1.20), which is also what JSON.stringify writes for a
// finite number: the shortest decimal that reads back as f, in plain
// notation from 1e-7 up to 1e21 and in exponent notation (1e+21, 1.5e-7)
// outside that range. -0 is written "0"; NaN and ±Infinity are written
// "NaN", "Infinity" and "-Infinity" (JSON.stringify would write null for
// them; callers encode them their own way).
func AppendNumber(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	case f == 0: // +0 and -0
		return append(b, '0')
	}
	if f < 0 {
		b = append(b, '-')
		f = -f
	}
	// strconv's shortest form picks, like ECMAScript, the fewest digits that
	// read back as f and, among those, the closest to f.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // d[.ddd]e±XX
	mant, exp := e, 0
	for i := range e {
		if e[i] == 'e' {
			mant = e[:i]
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
	}
	digits := make([]byte, 0, len(mant))
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	k := len(digits) // number of significant digits
	n := exp + 1     // position of the decimal point: f = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		b = append(b, digits...)
		for range n - k {
			b = append(b, '0')
		}
	case 0 < n && n <= 21:
		b = append(b, digits[:n]...)
		b = append(b, '.')
		b = append(b, digits[n:]...)
	case -6 < n && n <= 0:
		b = append(b, '0', '.')
		for range -n {
			b = append(b, '0')
		}
		b = append(b, digits...)
	default:
		b = append(b, digits[0])
		if k > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if n-1 >= 0 {
			b = append(b, '+')
		} else {
			b = append(b, '-')
		}
		b = strconv.AppendInt(b, int64(abs(n-1)), 10)
	}
	return b
}

// FormatNumber returns AppendNumber's text for f.
func FormatNumber(f float64) string { return string(AppendNumber(nil, f)) }

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
