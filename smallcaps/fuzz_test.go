package smallcaps

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bodies and slots to Decode: it must never
// panic, every error must be a *DecodeError, and whatever it accepts must
// re-encode canonically: Encode(Decode(x)) decodes and re-encodes to the
// same bytes and an equal value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`#"hello"`, `#["$0.Alleged: X","$0","&1"]`, `#{"b":1,"a":2,"!#x":"+5"}`, `#{"#error":"m","name":"TypeError","errorId":"e","cause":1}`,
		`#{"#tag":"copySet","payload":[1,"#NaN","%@@asyncIterator"]}`, `#{"!1":1,"1":2,"0":3}`, `#[1e400,-0,"-0","$01"]`, `#"\ud800"`,
	} {
		f.Add(s, "ro+1", "rp+2")
	}
	f.Fuzz(func(t *testing.T, body, slot0, slot1 string) {
		slots := []string{slot0, slot1}
		v, err := Decode(CapData{Body: body, Slots: slots})
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
			}
			return
		}
		c1, err := Encode(v)
		if err != nil {
			// Two slot indices may name one slot string with different
			// uses; a Go value cannot say that.
			if slot0 == slot1 && strings.Contains(err.Error(), "slot") {
				return
			}
			t.Fatalf("Decode(%q) = %#v, which does not encode: %v", body, v, err)
		}
		v1, err := Decode(c1)
		if err != nil {
			t.Fatalf("Encode gave %s, which does not decode: %v", c1.Body, err)
		}
		c2, err := Encode(v1)
		if err != nil || c2.Body != c1.Body || !slicesEqual(c2.Slots, c1.Slots) {
			t.Fatalf("not canonical: %s %q then %s %q (%v)", c1.Body, c1.Slots, c2.Body, c2.Slots, err)
		}
		if !Equal(v1, asDecoded(v)) {
			t.Fatalf("Decode(Encode(%#v)) = %#v", v, v1)
		}
	})
}

// FuzzRoundTrip builds values from the fuzzer's bytes: Encode must accept
// each, and Decode must give back an equal value (-0 becoming 0), with the
// slots each remotable and promise named.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte("\x05\x03abc\x02\x01\x07\x09\x08"))
	f.Add([]byte("\x0c\x04\x0d\x02\x00!x\x0e\x03\x0a\x0b\x05\x06"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := byteGen{data: data}
		v := g.value(0)
		cd, err := Encode(v)
		if err != nil {
			if g.conflict || errors.Is(err, ErrUnencodable) && strings.Contains(err.Error(), "twice") {
				return
			}
			t.Fatalf("Encode(%#v): %v", v, err)
		}
		back, err := Decode(cd)
		if err != nil {
			t.Fatalf("Decode(%s %q): %v", cd.Body, cd.Slots, err)
		}
		if !Equal(back, asDecoded(v)) {
			t.Fatalf("round trip of %#v gave %#v via %s", v, back, cd.Body)
		}
		again, err := Encode(back)
		want, _ := Encode(asDecoded(v))
		if err != nil || again.Body != want.Body {
			t.Fatalf("re-encoding gave %s (%v), want %s", again.Body, err, want.Body)
		}
	})
}

// byteGen turns bytes into a value of the model.
type byteGen struct {
	data     []byte
	conflict bool // a slot string used with two kinds or ifaces
	uses     map[string]string
}

func (g *byteGen) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

func (g *byteGen) str() string {
	n := int(g.byte() % 8)
	if n > len(g.data) {
		n = len(g.data)
	}
	s := strings.ToValidUTF8(string(g.data[:n]), "\uFFFD")
	g.data = g.data[n:]
	return s
}

func (g *byteGen) slot(kind string) string {
	s := []string{"ro+1", "ro-1", "rp+1", "rp-2", "ko5"}[g.byte()%5]
	if g.uses == nil {
		g.uses = map[string]string{}
	}
	if prev, ok := g.uses[s]; ok && prev != kind {
		g.conflict = true
	}
	g.uses[s] = kind
	return s
}

func (g *byteGen) value(depth int) any {
	op := g.byte() % 16
	if depth > 6 && op >= 10 {
		op %= 10
	}
	switch op {
	case 0:
		return g.str()
	case 1:
		return "!" + g.str()
	case 2:
		var bits uint64
		for range 8 {
			bits = bits<<8 | uint64(g.byte())
		}
		return math.Float64frombits(bits)
	case 3:
		return float64(int8(g.byte()))
	case 4:
		n := new(big.Int).SetBytes([]byte(g.str()))
		if g.byte()%2 == 0 {
			n.Neg(n)
		}
		return n
	case 5:
		return []any{true, false, nil, Undefined{}}[g.byte()%4]
	case 6:
		return []Symbol{AsyncIterator, "foo", "@@@@x", Symbol(g.str())}[g.byte()%4]
	case 7:
		iface := []string{"", "Alleged: A", "DebugName: b"}[g.byte()%3]
		return Remotable{Slot: g.slot("$" + iface), Iface: iface}
	case 8:
		return Promise{Slot: g.slot("&")}
	case 9:
		return &Error{Name: []string{"Error", "TypeError", "Bogus", ""}[g.byte()%4], Message: g.str(), ErrorID: []string{"", "e#1"}[g.byte()%2]}
	case 10, 11:
		a := make([]any, g.byte()%4)
		for i := range a {
			a[i] = g.value(depth + 1)
		}
		return a
	case 12, 13:
		r := Record{}
		for range g.byte() % 4 {
			r = append(r, Field{g.str(), g.value(depth + 1)})
		}
		return r
	case 14:
		return Tagged{Tag: g.str(), Payload: g.value(depth + 1)}
	default:
		return &Error{Name: "Error", Message: g.str(), Extra: Record{{"cause", g.value(depth + 1)}}}
	}
}
