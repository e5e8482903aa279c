package jsjson

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// The thorough checks are smallcaps' golden tests (strings, key order and
// thousands of numbers against Node.js); these pin the basics here.

func TestAppendString(t *testing.T) {
	in := "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f<>&\u2028\u2029😀\xff"
	want := `"q\"b\\s/\b\f\n\r\t\u0001\u001f` + "\x7f<>&\u2028\u2029😀\uFFFD" + `"`
	if got := string(AppendString(nil, in)); got != want {
		t.Errorf("AppendString = %s, want %s", got, want)
	}
}

func TestLessUTF16(t *testing.T) {
	// JavaScript's sort: "" < " " < "Z" < "z" < "😀" (U+D83D…) < U+E000 < U+FFFF.
	order := []string{"", " ", "Z", "a", "ab", "z", "😀", "\ue000", "\uffff"}
	for i := range order {
		for j := range order {
			if got := LessUTF16(order[i], order[j]); got != (i < j) {
				t.Errorf("LessUTF16(%q, %q) = %v", order[i], order[j], got)
			}
		}
	}
}

func TestFormatNumber(t *testing.T) {
	for f, want := range map[float64]string{
		0: "0", math.Copysign(0, -1): "0", 1e21: "1e+21", 1e20: "100000000000000000000", 1e-7: "1e-7",
		1e-6: "0.000001", -1.5: "-1.5", 123e-20: "1.23e-18", 5e-324: "5e-324", math.NaN(): "NaN", math.Inf(-1): "-Infinity",
	} {
		if got := FormatNumber(f); got != want {
			t.Errorf("FormatNumber(%v) = %s, want %s", f, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	v, err := Parse([]byte(` {"a":1,"b":[true,null,"x"],"a":2} `), 10)
	if err != nil {
		t.Fatal(err)
	}
	if v.Kind != Object || len(v.Members) != 3 || v.Members[2].Key != "a" || v.Members[2].Value.Text != "2" {
		t.Errorf("members %+v: want all three, the repeated key included", v.Members)
	}
	if b := v.Members[1].Value; b.Kind != Array || len(b.Elems) != 3 || !b.Elems[0].Bool || b.Elems[1].Kind != Null || b.Elems[2].Text != "x" {
		t.Errorf("array %+v", b)
	}
	for _, bad := range []string{``, `[1,2`, `1 2`, `{"a"}`, `[1,]`, `01`, `"\x"`, strings.Repeat("[", 11) + strings.Repeat("]", 11)} {
		if _, err := Parse([]byte(bad), 10); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}
