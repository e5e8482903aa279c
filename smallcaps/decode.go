package smallcaps

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ocapnet/ocapnet/internal/jsjson"
)

// Decode returns the value of cd, with @endo/marshal's fromCapData rules
// (kernel-protocol.md §6.3). Errors are *DecodeError.
func Decode(cd CapData) (any, error) {
	if !strings.HasPrefix(cd.Body, "#") {
		return nil, &DecodeError{Path: "body", Err: ErrNotSmallcaps, Detail: "starts with " + quote(firstRune(cd.Body))}
	}
	tree, err := jsjson.Parse([]byte(cd.Body[1:]), MaxDepth)
	if err != nil {
		return nil, &DecodeError{Path: "body", Err: ErrBadJSON, Detail: strings.TrimPrefix(err.Error(), jsjson.ErrSyntax.Error()+": ")}
	}
	d := decoder{slots: cd.Slots, vals: map[int]any{}}
	return d.value(tree, nil)
}

func firstRune(s string) string {
	for _, r := range s {
		return string(r)
	}
	return ""
}

type decoder struct {
	slots []string
	vals  map[int]any // slot index → the value decoded for it first
}

func (d *decoder) fail(p path, category error, format string, args ...any) error {
	return &DecodeError{Path: p.String(), Err: category, Detail: fmt.Sprintf(format, args...)}
}

func (d *decoder) value(v *jsjson.Value, p path) (any, error) {
	switch v.Kind {
	case jsjson.Null:
		return nil, nil
	case jsjson.Bool:
		return v.Bool, nil
	case jsjson.Number:
		return parseNumber(v.Text), nil
	case jsjson.String:
		return d.string(v.Text, p)
	case jsjson.Array:
		out := make([]any, len(v.Elems))
		for i, e := range v.Elems {
			x, err := d.value(e, p.index(i))
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	}
	members := jsObject(v.Members)
	if has(members, "#tag") {
		return d.tagged(members, p)
	}
	if has(members, "#error") {
		return d.error(members, p)
	}
	return d.record(members, p)
}

// parseNumber reads a JSON number as JSON.parse does: the nearest double,
// ±Infinity beyond the range (strconv then reports ErrRange with that value).
func parseNumber(text string) float64 {
	f, _ := strconv.ParseFloat(text, 64)
	return f
}

func (d *decoder) string(s string, p path) (any, error) {
	if !startsSpecial(s) {
		return s, nil
	}
	switch s[0] {
	case '!':
		return s[1:], nil
	case '%':
		name := s[1:]
		if why := checkSymbol(name); why != "" {
			return nil, d.fail(p, ErrBadValue, "symbol %s: %s", quote(s), why)
		}
		return Symbol(name), nil
	case '#':
		switch s {
		case "#undefined":
			return Undefined{}, nil
		case "#NaN":
			return math.NaN(), nil
		case "#Infinity":
			return math.Inf(1), nil
		case "#-Infinity":
			return math.Inf(-1), nil
		}
		return nil, d.fail(p, ErrUnknownConstant, "%s", quote(s))
	case '+', '-':
		n, ok := parseBigInt(s)
		if !ok {
			return nil, d.fail(p, ErrBadValue, "%s is not a bigint", quote(s))
		}
		return n, nil
	case '$', '&':
		return d.slot(s, p)
	}
	return nil, d.fail(p, ErrReservedPrefix, "%s starts with %q", quote(s), s[:1])
}

// parseBigInt reads "+N" or "-N" as JavaScript's BigInt(string) does for a
// string with a sign: decimal digits, then optional white space.
func parseBigInt(s string) (*big.Int, bool) {
	digits := strings.TrimRightFunc(s[1:], isJSSpace)
	if digits == "" {
		return nil, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return nil, false
		}
	}
	n, _ := new(big.Int).SetString(digits, 10)
	if s[0] == '-' {
		n.Neg(n)
	}
	return n, true
}

// slot decodes "$i[.iface]" or "&i": the index is the text before the
// first ".", read as JavaScript's Number(text) reads it.
func (d *decoder) slot(s string, p path) (any, error) {
	promise := s[0] == '&'
	text, iface, _ := strings.Cut(s[1:], ".")
	f, ok := jsStringToNumber(text)
	if !ok || f < 0 || f > maxSafeInteger || f != math.Trunc(f) {
		return nil, d.fail(p, ErrSlotIndex, "%s: %s is not a slot index", quote(s), quote(text))
	}
	index := int(f)
	if index >= len(d.slots) {
		return nil, d.fail(p, ErrSlotIndex, "%s: index %d out of range (%d slots)", quote(s), index, len(d.slots))
	}
	if slot := d.slots[index]; slot == "" || !utf8.ValidString(slot) {
		return nil, d.fail(p, ErrBadValue, "%s: slot %d is %s, not a reference", quote(s), index, quote(slot))
	}
	if v, ok := d.vals[index]; ok {
		if _, isPromise := v.(Promise); isPromise != promise {
			return nil, d.fail(p, ErrSlotKind, "%s: slot %d was a %s before", quote(s), index, kindName(!promise))
		}
		return v, nil
	}
	var v any
	if promise {
		v = Promise{Slot: d.slots[index]}
	} else {
		v = Remotable{Slot: d.slots[index], Iface: iface}
	}
	d.vals[index] = v
	return v, nil
}

func kindName(promise bool) string {
	if promise {
		return "promise"
	}
	return "remotable"
}

func (d *decoder) tagged(m []jsjson.Member, p path) (any, error) {
	tag := get(m, "#tag")
	if tag.Kind != jsjson.String {
		return nil, d.fail(p, ErrBadValue, "the \"#tag\" of a tagged record is a %v, not a string", tag.Kind)
	}
	for _, f := range m {
		if f.Key != "#tag" && f.Key != "payload" {
			return nil, d.fail(p, ErrBadValue, "tagged record has an unexpected property %s", quote(f.Key))
		}
	}
	payload := get(m, "payload")
	if payload == nil {
		return nil, d.fail(p, ErrBadValue, "tagged record has no payload")
	}
	t, err := d.string(tag.Text, append(p, ".#tag"))
	if err != nil {
		return nil, err
	}
	ts, ok := t.(string)
	if !ok {
		return nil, d.fail(append(p, ".#tag"), ErrBadValue, "tag %s decodes to a %T, not a string", quote(tag.Text), t)
	}
	x, err := d.value(payload, append(p, ".payload"))
	if err != nil {
		return nil, err
	}
	return Tagged{Tag: ts, Payload: x}, nil
}

func (d *decoder) error(m []jsjson.Member, p path) (any, error) {
	if has(m, "message") {
		return nil, d.fail(p, ErrBadValue, "error record has a \"message\" property")
	}
	rawName := get(m, "name")
	if rawName == nil {
		return nil, d.fail(p, ErrErrorName, "error record has no name")
	}
	name, err := d.value(rawName, append(p, ".name"))
	if err != nil {
		return nil, err
	}
	message, err := d.value(get(m, "#error"), append(p, ".#error"))
	if err != nil {
		return nil, err
	}
	out := &Error{}
	for _, f := range m {
		if f.Key == "#error" || f.Key == "name" {
			continue
		}
		x, err := d.value(f.Value, p.key(f.Key))
		if err != nil {
			return nil, err
		}
		if s, ok := x.(string); ok && f.Key == "errorId" && s != "" {
			out.ErrorID = s
			continue
		}
		out.Extra = append(out.Extra, Field{f.Key, x})
	}
	ns, ok := name.(string)
	if !ok {
		return nil, d.fail(append(p, ".name"), ErrErrorName, "the name is a %T", name)
	}
	if out.Message, ok = message.(string); !ok {
		return nil, d.fail(append(p, ".#error"), ErrBadValue, "the error message is a %T, not a string", message)
	}
	out.Name = "Error"
	if errorNames[ns] {
		out.Name = ns
	}
	return out, nil
}

func (d *decoder) record(m []jsjson.Member, p path) (any, error) {
	out := make(Record, 0, len(m))
	for _, f := range m {
		kp := p.key(f.Key)
		if strings.HasPrefix(f.Key, "#") {
			return nil, d.fail(kp, ErrRecordKey, "unrecognized record type %s", quote(f.Key))
		}
		k, err := d.string(f.Key, kp)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) && de.Err == ErrBadValue {
				de.Err = ErrRecordKey
			}
			return nil, err
		}
		ks, ok := k.(string)
		if !ok {
			return nil, d.fail(kp, ErrRecordKey, "key %s decodes to a %T, not a string", quote(f.Key), k)
		}
		x, err := d.value(f.Value, kp)
		if err != nil {
			return nil, err
		}
		out = append(out, Field{ks, x})
	}
	return jsOrder(out), nil
}

// jsObject applies JSON.parse's object semantics to parsed members: a
// repeated key keeps its first place and takes its last value, and the
// keys are then listed as a JavaScript object lists them.
func jsObject(m []jsjson.Member) []jsjson.Member {
	fields := make(Record, len(m))
	for i, x := range m {
		fields[i] = Field{x.Key, x.Value}
	}
	fields = jsOrder(fields)
	out := make([]jsjson.Member, len(fields))
	for i, f := range fields {
		out[i] = jsjson.Member{Key: f.Key, Value: f.Value.(*jsjson.Value)}
	}
	return out
}

// jsOrder merges repeated keys (first place, last value) and orders the
// keys as JavaScript's OrdinaryOwnPropertyKeys does: array indices
// ascending, then the other keys in insertion order.
func jsOrder(fields Record) Record {
	seen := make(map[string]int, len(fields))
	var indices, others Record
	for _, f := range fields {
		if i, ok := seen[f.Key]; ok {
			if i < 0 {
				indices[-i-1].Value = f.Value
			} else {
				others[i].Value = f.Value
			}
			continue
		}
		if isArrayIndex(f.Key) {
			indices = append(indices, f)
			seen[f.Key] = -len(indices)
		} else {
			others = append(others, f)
			seen[f.Key] = len(others) - 1
		}
	}
	if len(indices) == 0 {
		return others
	}
	sortByIndex(indices)
	return append(indices, others...)
}

// isArrayIndex reports whether k is the canonical decimal text of an
// integer from 0 to 2^32-2.
func isArrayIndex(k string) bool {
	if k == "" || len(k) > 10 || (k[0] == '0' && k != "0") {
		return false
	}
	n, err := strconv.ParseUint(k, 10, 64)
	return err == nil && n <= 1<<32-2
}

func sortByIndex(r Record) {
	slices.SortStableFunc(r, func(a, b Field) int {
		x, _ := strconv.ParseUint(a.Key, 10, 64)
		y, _ := strconv.ParseUint(b.Key, 10, 64)
		return cmp.Compare(x, y)
	})
}

func has(m []jsjson.Member, key string) bool { return get(m, key) != nil }

func get(m []jsjson.Member, key string) *jsjson.Value {
	for _, f := range m {
		if f.Key == key {
			return f.Value
		}
	}
	return nil
}
