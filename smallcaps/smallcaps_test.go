package smallcaps

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
)

func bigint(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

var (
	greeter = Remotable{Slot: "ko1", Iface: "Alleged: Greeter"}
	o2      = Remotable{Slot: "ko2", Iface: "Alleged: Alleged"}
	p1      = Promise{Slot: "kp3"}
)

// specTable is kernel-protocol.md §6.5, written with the Go value model.
var specTable = []struct {
	v     any
	body  string
	slots []string
}{
	{"hello", `#"hello"`, nil},
	{"", `#""`, nil},
	{"!bang", `#"!!bang"`, nil},
	{"#hash", `#"!#hash"`, nil},
	{"$dollar", `#"!$dollar"`, nil},
	{"&amp", `#"!&amp"`, nil},
	{"-dash", `#"!-dash"`, nil},
	{"+plus", `#"!+plus"`, nil},
	{".dot", `#".dot"`, nil},
	{"é☃", `#"é☃"`, nil},
	{42.0, `#42`, nil},
	{42, `#42`, nil},
	{-1.5, `#-1.5`, nil},
	{math.Copysign(0, -1), `#0`, nil},
	{1e21, `#1e+21`, nil},
	{math.NaN(), `#"#NaN"`, nil},
	{math.Inf(1), `#"#Infinity"`, nil},
	{math.Inf(-1), `#"#-Infinity"`, nil},
	{big.NewInt(10), `#"+10"`, nil},
	{big.NewInt(-7), `#"-7"`, nil},
	{big.NewInt(0), `#"+0"`, nil},
	{bigint("1180591620717411303424"), `#"+1180591620717411303424"`, nil},
	{true, `#true`, nil},
	{nil, `#null`, nil},
	{Undefined{}, `#"#undefined"`, nil},
	{[]any{}, `#[]`, nil},
	{[]any{1.0, "a", nil}, `#[1,"a",null]`, nil},
	{Record{}, `#{}`, nil},
	{Record{{"b", 1.0}, {"a", 2.0}}, `#{"a":2,"b":1}`, nil},
	{map[string]any{"b": 1, "a": 2}, `#{"a":2,"b":1}`, nil},
	{Record{{"#x", 1.0}, {"!y", 2.0}}, `#{"!!y":2,"!#x":1}`, nil},
	{Record{{"u", Undefined{}}}, `#{"u":"#undefined"}`, nil},
	{AsyncIterator, `#"%@@asyncIterator"`, nil},
	{Symbol("foo"), `#"%foo"`, nil},
	{Tagged{"copySet", []any{1.0, 2.0}}, `#{"#tag":"copySet","payload":[1,2]}`, nil},
	{greeter, `#"$0.Alleged: Greeter"`, []string{"ko1"}},
	{p1, `#"&0"`, []string{"kp3"}},
	{[]any{greeter, greeter, p1}, `#["$0.Alleged: Greeter","$0","&1"]`, []string{"ko1", "kp3"}},
	{Record{{"target", o2}, {"p", p1}}, `#{"p":"&0","target":"$1.Alleged: Alleged"}`, []string{"kp3", "ko2"}},
	{&Error{Name: "Error", Message: "boom"}, `#{"#error":"boom","name":"Error"}`, nil},
	{&Error{Message: "boom"}, `#{"#error":"boom","name":"Error"}`, nil},
	{Error{Name: "TypeError", Message: "bad"}, `#{"#error":"bad","name":"TypeError"}`, nil},
	{&Error{Name: "RangeError", Message: "#x"}, `#{"#error":"!#x","name":"RangeError"}`, nil},
	{[]any{&Error{Name: "Error", Message: "inner"}}, `#[{"#error":"inner","name":"Error"}]`, nil},
	{&Error{Name: "Error", Message: "boom", ErrorID: "error:liveSlots:v1#70001"},
		`#{"#error":"boom","errorId":"error:liveSlots:v1#70001","name":"Error"}`, nil},
	{[]any{"greet", []any{"Alice"}}, `#["greet",["Alice"]]`, nil},
	{[]any{"add", []any{1, big.NewInt(2)}}, `#["add",[1,"+2"]]`, nil},
	{[]any{"use", []any{greeter, p1}}, `#["use",["$0.Alleged: Greeter","&1"]]`, []string{"ko1", "kp3"}},
	// Go's bare remotable: "$i" with no iface.
	{Remotable{Slot: "ro+1"}, `#"$0"`, []string{"ro+1"}},
	{&Error{Name: "Error", Message: "m", Extra: Record{{"cause", &Error{Name: "TypeError", Message: "c"}}, {"0", 1.0}}},
		`#{"#error":"m","name":"Error","0":1,"cause":{"#error":"c","name":"TypeError"}}`, nil},
}

func TestSpecTable(t *testing.T) {
	for _, c := range specTable {
		cd, err := Encode(c.v)
		if err != nil {
			t.Errorf("Encode(%#v): %v", c.v, err)
			continue
		}
		if cd.Body != c.body || !slicesEqual(cd.Slots, c.slots) {
			t.Errorf("Encode(%#v) = %s %q, want %s %q", c.v, cd.Body, cd.Slots, c.body, c.slots)
		}
		if cd.Slots == nil && len(c.slots) == 0 && string(cd.AppendJSON(nil)) != `{"body":`+quoteJSON(c.body)+`,"slots":[]}` {
			t.Errorf("AppendJSON = %s", cd.AppendJSON(nil))
		}
		back, err := Decode(cd)
		if err != nil {
			t.Errorf("Decode(%s): %v", cd.Body, err)
			continue
		}
		if !Equal(back, asDecoded(c.v)) {
			t.Errorf("Decode(Encode(%#v)) = %#v", c.v, back)
		}
	}
}

func quoteJSON(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// TestSpecialStringEscape: every string starting with one of !"#$%&'()*+,-
// is escaped with "!", in values, record keys, error fields and tags, and
// no other string is.
func TestSpecialStringEscape(t *testing.T) {
	for c := rune(0x20); c < 0x80; c++ {
		s := string(c) + "x"
		special := c >= '!' && c <= '-'
		cd, err := Encode([]any{s, Record{{s, 1.0}}, &Error{Message: s, Name: s}, Tagged{Tag: s, Payload: nil}})
		if err != nil {
			t.Fatal(err)
		}
		want := quoteJSONString(s)
		if special {
			want = quoteJSONString("!" + s)
		}
		if n := strings.Count(cd.Body, want); n != 5 {
			t.Errorf("%q: want %s five times in %s, found %d", s, want, cd.Body, n)
		}
		back, err := Decode(cd)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		a := back.([]any)
		if a[0] != s || a[1].(Record)[0].Key != s || a[2].(*Error).Message != s || a[3].(Tagged).Tag != s {
			t.Errorf("%q: decoded %#v", s, back)
		}
	}
}

func quoteJSONString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}

// TestSlotOrder: slots are numbered depth first, first seen, with record
// keys in sorted order, and deduplicated by slot string.
func TestSlotOrder(t *testing.T) {
	a := Remotable{Slot: "ro+1", Iface: "Alleged: A"}
	b := Remotable{Slot: "ro-2", Iface: "Alleged: B"}
	p := Promise{Slot: "rp+3"}
	v := Record{
		{"z", a},
		{"b", []any{p, Record{{"y", b}, {"x", a}}}},
		{"a", []any{b, b}},
	}
	cd, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := `#{"a":["$0.Alleged: B","$0"],"b":["&1",{"x":"$2.Alleged: A","y":"$0"}],"z":"$2"}`
	wantSlots := []string{"ro-2", "rp+3", "ro+1"}
	if cd.Body != wantBody || !slicesEqual(cd.Slots, wantSlots) {
		t.Errorf("got %s %q\nwant %s %q", cd.Body, cd.Slots, wantBody, wantSlots)
	}
}

func TestEncodeErrors(t *testing.T) {
	cyclic := []any{nil}
	cyclic[0] = cyclic
	for name, v := range map[string]any{
		"unsupported type":    struct{}{},
		"invalid UTF-8":       "a\xffb",
		"invalid UTF-8 key":   Record{{"\xff", 1}},
		"duplicate key":       Record{{"a", 1}, {"a", 2}},
		"unsafe integer":      int64(1 << 53),
		"unsafe uint":         uint64(1 << 60),
		"nil big":             (*big.Int)(nil),
		"nil error":           (*Error)(nil),
		"bad well-known":      Symbol("@@bogus"),
		"empty well-known":    Symbol("@@"),
		"remotable no slot":   Remotable{},
		"promise no slot":     Promise{},
		"kind conflict":       []any{Remotable{Slot: "x"}, Promise{Slot: "x"}},
		"iface conflict":      []any{Remotable{Slot: "x", Iface: "Alleged: A"}, Remotable{Slot: "x", Iface: "Alleged: B"}},
		"extra name":          &Error{Extra: Record{{"name", "x"}}},
		"extra #tag":          &Error{Extra: Record{{"#tag", "x"}}},
		"extra errorId twice": &Error{ErrorID: "e", Extra: Record{{"errorId", "x"}}},
		"cycle":               cyclic,
		"bad value in tagged": Tagged{Tag: "t", Payload: struct{}{}},
		"bad value in array":  []any{1, func() {}},
		"bad value in record": map[string]any{"a": []int{1}},
	} {
		_, err := Encode(v)
		var ee *EncodeError
		if !errors.Is(err, ErrUnencodable) || !errors.As(err, &ee) {
			t.Errorf("%s: Encode = %v, want an EncodeError", name, err)
		}
	}
	_, err := Encode([]any{1, Record{{"k", []any{struct{}{}}}}})
	if err == nil || !strings.Contains(err.Error(), "body[1].k[0]") {
		t.Errorf("error does not locate the bad value: %v", err)
	}
}

func TestDecodeErrorsNamePlace(t *testing.T) {
	for body, want := range map[string]string{
		`#[1,{"a":"#foo"}]`: `unknown constant at body[1].a: "#foo"`,
		`#{"k":[0,"*x"]}`:   `reserved for future use at body.k[1]`,
		`#{"#x":1}`:         `bad record key at body["#x"]`,
		`#["$3"]`:           `bad slot index at body[0]: "$3": index 3 out of range (0 slots)`,
		`#{"#error":"m"}`:   `error record without a string name at body: error record has no name`,
		`#[`:                `body is not valid JSON at body`,
		`x`:                 `no leading #`,
		`#` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001): `nested deeper than 1000`,
	} {
		_, err := Decode(CapData{Body: body})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%.40s) = %v, want …%s…", body, err, want)
		}
	}
}

func TestDecodeValues(t *testing.T) {
	for body, want := range map[string]any{
		`#1e400`:                         math.Inf(1),
		`#-0`:                            math.Copysign(0, -1),
		`#"+12\u00a0"`:                   big.NewInt(12),
		`#"%@@@@x"`:                      Symbol("@@@@x"),
		`#{"#error":"m","name":"Bogus"}`: &Error{Name: "Error", Message: "m"},
		`#{"#error":"m","name":"Error","errorId":5,"cause":"c"}`: &Error{Name: "Error", Message: "m", Extra: Record{{"errorId", 5.0}, {"cause", "c"}}},
		`#{"#error":"!#m","name":"!TypeError","errorId":"!$e"}`:  &Error{Name: "TypeError", Message: "#m", ErrorID: "$e"},
		`#{"a":1,"!a":2}`: Record{{"a", 2.0}},
		`#"\ud800"`:       "\uFFFD",
	} {
		got, err := Decode(CapData{Body: body})
		if err != nil || !Equal(got, want) {
			t.Errorf("Decode(%s) = %#v, %v; want %#v", body, got, err, want)
		}
	}
	// Every occurrence of a slot takes the first one's iface.
	got, err := Decode(CapData{Body: `#["$0","$0.Alleged: X"]`, Slots: []string{"ro+1"}})
	if err != nil || !Equal(got, []any{Remotable{Slot: "ro+1"}, Remotable{Slot: "ro+1"}}) {
		t.Errorf("got %#v, %v", got, err)
	}
}

func TestEqual(t *testing.T) {
	same := [][2]any{
		{math.NaN(), math.NaN()},
		{1, 1.0},
		{Record{{"a", 1}, {"b", 2}}, Record{{"b", 2.0}, {"a", 1.0}}},
		{map[string]any{"a": 1}, Record{{"a", 1.0}}},
		{Error{Message: "m"}, &Error{Name: "Error", Message: "m"}},
		{&Remotable{Slot: "s"}, Remotable{Slot: "s"}},
		{big.NewInt(5), big.NewInt(5)},
	}
	for _, c := range same {
		if !Equal(c[0], c[1]) {
			t.Errorf("Equal(%#v, %#v) = false", c[0], c[1])
		}
	}
	differ := [][2]any{
		{0.0, math.Copysign(0, -1)},
		{1.0, "1"},
		{big.NewInt(1), 1.0},
		{Record{{"a", 1}}, Record{{"a", 1}, {"b", 2}}},
		{Remotable{Slot: "s", Iface: "Alleged: A"}, Remotable{Slot: "s"}},
		{Remotable{Slot: "s"}, Promise{Slot: "s"}},
		{[]any{1}, []any{1, 2}},
		{Undefined{}, nil},
		{&Error{Message: "m", ErrorID: "x"}, &Error{Message: "m"}},
	}
	for _, c := range differ {
		if Equal(c[0], c[1]) {
			t.Errorf("Equal(%#v, %#v) = true", c[0], c[1])
		}
	}
}

func TestBridge(t *testing.T) {
	v := []any{
		"s", 1.5, math.Copysign(0, -1), math.NaN(), math.Inf(-1), big.NewInt(-7), true, nil, Undefined{},
		Record{{"@only", 1.0}}, Record{{"@a", 1.0}, {"b", 2.0}}, AsyncIterator,
		Remotable{Slot: "ro+1", Iface: "Alleged: X"}, Remotable{Slot: "ro+2"}, Promise{Slot: "rp+1"},
		&Error{Name: "TypeError", Message: "m", ErrorID: "id", Extra: Record{{"cause", "c"}}},
		Tagged{Tag: "copySet", Payload: []any{1.0}},
	}
	cd, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	text, err := DecodeToJSON(cd)
	if err != nil {
		t.Fatal(err)
	}
	want := `["s",1.5,{"@number":"-0"},{"@number":"NaN"},{"@number":"-Infinity"},{"@bigint":"-7"},true,null,{"@undefined":true},` +
		`{"@record":{"@only":1}},{"@a":1,"b":2},{"@symbol":"@@asyncIterator"},` +
		`{"@remotable":{"iface":"Alleged: X","slot":"ro+1"}},{"@remotable":{"slot":"ro+2"}},{"@promise":{"slot":"rp+1"}},` +
		`{"@error":{"errorId":"id","extra":{"cause":"c"},"message":"m","name":"TypeError"}},{"@tagged":{"payload":[1],"tag":"copySet"}}]`
	// -0 is encoded as 0, so the bridge of the decoded body has 0 there.
	want = strings.Replace(want, `{"@number":"-0"}`, `0`, 1)
	if string(text) != want {
		t.Errorf("DecodeToJSON =\n%s\nwant\n%s", text, want)
	}
	again, err := EncodeFromJSON(text)
	if err != nil {
		t.Fatal(err)
	}
	if again.Body != cd.Body || !slicesEqual(again.Slots, cd.Slots) {
		t.Errorf("EncodeFromJSON(DecodeToJSON(x)) = %s %q, want %s %q", again.Body, again.Slots, cd.Body, cd.Slots)
	}
	for _, bad := range []string{
		`{"@bogus":1}`, `{"@number":"1"}`, `{"@bigint":"+1"}`, `{"@bigint":1}`, `{"@undefined":false}`, `{"@symbol":"@@nope"}`,
		`{"@remotable":{}}`, `{"@remotable":{"slot":"x","y":1}}`, `{"@promise":"x"}`, `{"@error":{"name":"E"}}`,
		`{"@tagged":{"tag":"t"}}`, `{"@record":1}`, `[1] 2`, `{`,
	} {
		if _, err := EncodeFromJSON([]byte(bad)); !errors.Is(err, ErrBridge) && !errors.Is(err, ErrUnencodable) {
			t.Errorf("EncodeFromJSON(%s) = %v, want ErrBridge", bad, err)
		}
	}
}
