package smallcaps

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/ocapnet/ocapnet/internal/jsjson"
)

// golden is testdata/golden.json, written by interop/endo/gen.mjs from the
// real @endo/marshal 1.8.0 under SES (npm run --prefix interop/endo gen).
type golden struct {
	Versions         map[string]string `json:"versions"`
	WellKnownSymbols []string          `json:"wellKnownSymbols"`
	Encode           []struct {
		Label string          `json:"label"`
		Value json.RawMessage `json:"value"`
		Body  string          `json:"body"`
		Slots []string        `json:"slots"`
	} `json:"encode"`
	Decode []struct {
		Label string          `json:"label"`
		Body  string          `json:"body"`
		Slots []string        `json:"slots"`
		Value json.RawMessage `json:"value"`
		Error *string         `json:"error"`
	} `json:"decode"`
	Numbers []struct {
		Bits string `json:"bits"`
		Text string `json:"text"`
	} `json:"numbers"`
}

func loadGolden(t *testing.T) *golden {
	t.Helper()
	data, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if g.Versions["@endo/marshal"] != "1.8.0" {
		t.Fatalf("golden vectors are from @endo/marshal %s, want 1.8.0", g.Versions["@endo/marshal"])
	}
	return &g
}

func bridgeValue(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var j any
	if err := dec.Decode(&j); err != nil {
		t.Fatalf("golden value %s: %v", raw, err)
	}
	v, err := FromJSON(j)
	if err != nil {
		t.Fatalf("golden value %s: %v", raw, err)
	}
	return v
}

// TestGoldenEncode: Go encodes every golden value byte for byte as
// @endo/marshal does.
func TestGoldenEncode(t *testing.T) {
	g := loadGolden(t)
	if len(g.Encode) < 400 {
		t.Fatalf("only %d golden encode vectors", len(g.Encode))
	}
	for _, c := range g.Encode {
		cd, err := Encode(bridgeValue(t, c.Value))
		if err != nil {
			t.Errorf("%s: Encode: %v", c.Label, err)
			continue
		}
		if cd.Body != c.Body || !slicesEqual(cd.Slots, c.Slots) {
			t.Errorf("%s:\n got body %s slots %q\nwant body %s slots %q", c.Label, cd.Body, cd.Slots, c.Body, c.Slots)
		}
	}
}

// TestGoldenDecodeEncoded: every body @endo/marshal wrote decodes to the
// value it was made from.
func TestGoldenDecodeEncoded(t *testing.T) {
	for _, c := range loadGolden(t).Encode {
		want := bridgeValue(t, c.Value)
		got, err := Decode(CapData{Body: c.Body, Slots: c.Slots})
		if err != nil {
			t.Errorf("%s: Decode(%s): %v", c.Label, c.Body, err)
			continue
		}
		// The encoding writes -0 as 0.
		if !Equal(got, asDecoded(want)) {
			t.Errorf("%s: Decode(%s) = %#v, want %#v", c.Label, c.Body, got, want)
		}
	}
}

// mapLeaves rebuilds v with f applied to every value that is not an
// array, record or tagged value (errors are leaves).
func mapLeaves(v any, f func(any) any) any {
	switch x := canonical(v).(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = mapLeaves(e, f)
		}
		return out
	case Record:
		out := make(Record, len(x))
		for i, e := range x {
			out[i] = Field{e.Key, mapLeaves(e.Value, f)}
		}
		return out
	case Tagged:
		return Tagged{x.Tag, mapLeaves(x.Payload, f)}
	default:
		return f(x)
	}
}

// asDecoded returns v as Decode(Encode(v)) gives it back: -0 becomes 0
// and unknown error names become "Error".
func asDecoded(v any) any {
	return mapLeaves(v, func(v any) any {
		switch x := v.(type) {
		case float64:
			if x == 0 {
				return 0.0
			}
		case *Error:
			e := &Error{Name: "Error", Message: x.Message, ErrorID: x.ErrorID}
			if errorNames[x.Name] {
				e.Name = x.Name
			}
			if len(x.Extra) > 0 {
				e.Extra = asDecoded(x.Extra).(Record)
			}
			return e
		}
		return v
	})
}

// goldenDecodeErrors is the category Go reports for each body that
// @endo/marshal refuses (its own messages are in the golden file).
var goldenDecodeErrors = map[string]error{
	`#"#foo" []`:                      ErrUnknownConstant,
	`#"*x" []`:                        ErrReservedPrefix,
	`#"'x" []`:                        ErrReservedPrefix,
	`#"(x" []`:                        ErrReservedPrefix,
	`#")x" []`:                        ErrReservedPrefix,
	`#",x" []`:                        ErrReservedPrefix,
	`#"\"x" []`:                       ErrReservedPrefix,
	`#"+ 12" []`:                      ErrBadValue,
	`#"+" []`:                         ErrBadValue,
	`#"-" []`:                         ErrBadValue,
	`#"+0x10" []`:                     ErrBadValue,
	`#"+1e3" []`:                      ErrBadValue,
	`#"+1.0" []`:                      ErrBadValue,
	`#"+1_0" []`:                      ErrBadValue,
	`#{"#error":"m"} []`:              ErrErrorName,
	`#{"#error":"m","name":5} []`:     ErrErrorName,
	`#{"#error":5,"name":"Error"} []`: ErrBadValue,
	`#{"#error":"m","name":"Error","message":"x"} []`:  ErrBadValue,
	`#{"#error":"m","name":"Error","extra":"#bad"} []`: ErrUnknownConstant,
	`#{"#error":"m","name":"#undefined"} []`:           ErrErrorName,
	`#"$1" ["ro+1"]`:                                   ErrSlotIndex,
	`#"&1" ["rp+1"]`:                                   ErrSlotIndex,
	`#"$0" []`:                                         ErrSlotIndex,
	`#["$0","&0"] ["ro+1"]`:                            ErrSlotKind,
	`#"$x" ["ro+1"]`:                                   ErrSlotIndex,
	`#"$-1" ["ro+1"]`:                                  ErrSlotIndex,
	`#"$1.5" ["ro+1"]`:                                 ErrSlotIndex,
	`#"$Infinity" ["ro+1"]`:                            ErrSlotIndex,
	`#"$9007199254740993" ["ro+1"]`:                    ErrSlotIndex,
	`#{"#tag":"x"} []`:                                 ErrBadValue,
	`#{"#tag":5,"payload":1} []`:                       ErrBadValue,
	`#{"#tag":"x","payload":1,"y":2} []`:               ErrBadValue,
	`#{"#tag":"+1","payload":1} []`:                    ErrBadValue,
	`#{"#tag":"x","payload":1,"#error":"m"} []`:        ErrBadValue,
	`#{"#error":"m","#tag":"x","payload":1} []`:        ErrBadValue,
	`#{"#x":1} []`:                                     ErrRecordKey,
	`#{"+1":1} []`:                                     ErrRecordKey,
	`#{"%foo":1} []`:                                   ErrRecordKey,
	`#{"*x":1} []`:                                     ErrReservedPrefix,
	`#{"$0":1} ["ro+1"]`:                               ErrRecordKey,
	`#[1,2 []`:                                         ErrBadJSON,
	`# []`:                                             ErrBadJSON,
	`#1 2 []`:                                          ErrBadJSON,
	`#"%@@bogus" []`:                                   ErrBadValue,
	`#"%@@" []`:                                        ErrBadValue,
}

// Where Go knowingly differs from the JavaScript kernel's decoder.
var goldenDecodeDeviations = map[string]error{
	// JavaScript reads a body without "#" as legacy capdata; the kernel
	// never writes one, and Go does not decode that format.
	`"plain capdata" []`: ErrNotSmallcaps,
	// The kernel's kslot makes a promise of any "rp…" slot, which "$"
	// then refuses; smallcaps treats slots as opaque and leaves that check
	// to package kernelwire.
	`#"$0" ["rp+1"]`: nil,
}

// TestGoldenDecodeChecks: bodies a peer might send decode to what
// @endo/marshal decodes them to, and fail where it fails.
func TestGoldenDecodeChecks(t *testing.T) {
	g := loadGolden(t)
	seen := map[string]bool{}
	for _, c := range g.Decode {
		seen[c.Label] = true
		got, err := Decode(CapData{Body: c.Body, Slots: c.Slots})
		if want, ok := goldenDecodeDeviations[c.Label]; ok {
			if !errors.Is(err, want) && !(want == nil && err == nil) {
				t.Errorf("%s: deviation: got %v, want %v", c.Label, err, want)
			}
			continue
		}
		if c.Error != nil {
			want, ok := goldenDecodeErrors[c.Label]
			if !ok {
				t.Errorf("%s: JavaScript fails (%s) but the test names no Go error for it", c.Label, *c.Error)
				continue
			}
			var de *DecodeError
			if !errors.Is(err, want) || !errors.As(err, &de) {
				t.Errorf("%s: JavaScript fails (%s); Go: %v, want %v", c.Label, *c.Error, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: JavaScript decodes it to %s; Go: %v", c.Label, c.Value, err)
			continue
		}
		if want := bridgeValue(t, c.Value); !Equal(errorsNameMessage(got), want) {
			t.Errorf("%s: Go decodes to %#v, JavaScript to %s", c.Label, got, c.Value)
		}
	}
	for label := range goldenDecodeErrors {
		if !seen[label] {
			t.Errorf("goldenDecodeErrors has %s, which the golden file lacks", label)
		}
	}
}

// errorsNameMessage strips errors to name and message, all that a
// JavaScript decoder shows of them.
func errorsNameMessage(v any) any {
	return mapLeaves(v, func(v any) any {
		if x, ok := v.(*Error); ok {
			return &Error{Name: x.Name, Message: x.Message}
		}
		return v
	})
}

// TestGoldenRecordOrder: decoded records list keys as a JavaScript object
// does.
func TestGoldenRecordOrder(t *testing.T) {
	v, err := Decode(CapData{Body: `#{"!1":1,"1":2,"b":3,"0":4}`})
	if err != nil {
		t.Fatal(err)
	}
	want := Record{{"0", 4.0}, {"1", 1.0}, {"b", 3.0}}
	r := v.(Record)
	if len(r) != len(want) {
		t.Fatalf("got %v", r)
	}
	for i := range want {
		if r[i].Key != want[i].Key || r[i].Value != want[i].Value {
			t.Fatalf("got %v, want %v", r, want)
		}
	}
}

// TestGoldenNumbers: ECMAScript Number::toString on thousands of doubles.
func TestGoldenNumbers(t *testing.T) {
	g := loadGolden(t)
	if len(g.Numbers) < 3000 {
		t.Fatalf("only %d numbers", len(g.Numbers))
	}
	for _, n := range g.Numbers {
		bits, err := strconv.ParseUint(n.Bits, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		f := math.Float64frombits(bits)
		if got := jsjson.FormatNumber(f); got != n.Text {
			t.Errorf("Number::toString(%v) (bits %s) = %s, JavaScript %s", f, n.Bits, got, n.Text)
		}
	}
}

// TestGoldenWellKnownSymbols: the "@@" names match Node's Symbol.
func TestGoldenWellKnownSymbols(t *testing.T) {
	g := loadGolden(t)
	if len(g.WellKnownSymbols) != len(wellKnownSymbols) {
		t.Errorf("Node has %d well-known symbols %v, Go %d", len(g.WellKnownSymbols), g.WellKnownSymbols, len(wellKnownSymbols))
	}
	for _, n := range g.WellKnownSymbols {
		if !wellKnownSymbols[n] {
			t.Errorf("Go lacks well-known symbol %s", n)
		}
	}
}

func slicesEqual(a, b []string) bool { return slices.Equal(a, b) }
