package smallcaps

import (
	"cmp"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/ocapnet/ocapnet/internal/jsjson"
)

// maxSafeInteger is JavaScript's Number.MAX_SAFE_INTEGER.
const maxSafeInteger = 1<<53 - 1

// Encode returns the CapData of v, byte for byte as @endo/marshal's
// toCapData writes it (see the package documentation for the value model).
func Encode(v any) (CapData, error) {
	e := encoder{slotOf: map[string]int{}}
	b, err := e.value([]byte{'#'}, v, nil)
	if err != nil {
		return CapData{}, err
	}
	return CapData{Body: string(b), Slots: e.slots}, nil
}

type encoder struct {
	slots  []string
	slotOf map[string]int // slot string → index in slots
	kinds  []slotUse      // by index: how the slot was first used
}

type slotUse struct {
	promise bool
	iface   string
}

func (e *encoder) fail(p path, format string, args ...any) error {
	return &EncodeError{Path: p.String(), Detail: fmt.Sprintf(format, args...)}
}

func (e *encoder) value(b []byte, v any, p path) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return e.string(b, v, p)
	case float64:
		return appendNumber(b, v), nil
	case float32:
		return appendNumber(b, float64(v)), nil
	case int:
		return e.integer(b, int64(v), p)
	case int8:
		return e.integer(b, int64(v), p)
	case int16:
		return e.integer(b, int64(v), p)
	case int32:
		return e.integer(b, int64(v), p)
	case int64:
		return e.integer(b, v, p)
	case uint:
		return e.unsigned(b, uint64(v), p)
	case uint8:
		return e.unsigned(b, uint64(v), p)
	case uint16:
		return e.unsigned(b, uint64(v), p)
	case uint32:
		return e.unsigned(b, uint64(v), p)
	case uint64:
		return e.unsigned(b, v, p)
	case *big.Int:
		if v == nil {
			return nil, e.fail(p, "nil *big.Int")
		}
		return jsjson.AppendString(b, bigintText(v)), nil
	case Undefined:
		return append(b, `"#undefined"`...), nil
	case Symbol:
		if err := checkSymbol(string(v)); err != "" {
			return nil, e.fail(p, "symbol %s: %s", quote(string(v)), err)
		}
		if !utf8.ValidString(string(v)) {
			return nil, e.fail(p, "symbol name is not valid UTF-8")
		}
		return jsjson.AppendString(b, "%"+string(v)), nil
	case Remotable:
		return e.slot(b, v.Slot, false, v.Iface, p)
	case *Remotable:
		if v == nil {
			return nil, e.fail(p, "nil *Remotable")
		}
		return e.slot(b, v.Slot, false, v.Iface, p)
	case Promise:
		return e.slot(b, v.Slot, true, "", p)
	case *Promise:
		if v == nil {
			return nil, e.fail(p, "nil *Promise")
		}
		return e.slot(b, v.Slot, true, "", p)
	}
	if len(p) >= MaxDepth {
		return nil, e.fail(p, "nested deeper than %d (a cycle?)", MaxDepth)
	}
	switch v := v.(type) {
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = e.value(b, x, p.index(i)); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case Record:
		return e.record(b, v, p)
	case map[string]any:
		r := make(Record, 0, len(v))
		for k, x := range v {
			r = append(r, Field{k, x})
		}
		return e.record(b, r, p)
	case *Error:
		if v == nil {
			return nil, e.fail(p, "nil *Error")
		}
		return e.error(b, v, p)
	case Error:
		return e.error(b, &v, p)
	case Tagged:
		return e.tagged(b, v, p)
	case *Tagged:
		if v == nil {
			return nil, e.fail(p, "nil *Tagged")
		}
		return e.tagged(b, *v, p)
	}
	return nil, e.fail(p, "unsupported Go type %T", v)
}

// string appends s, escaped with "!" when it starts with a special
// character.
func (e *encoder) string(b []byte, s string, p path) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, e.fail(p, "string %s is not valid UTF-8", quote(s))
	}
	if startsSpecial(s) {
		return jsjson.AppendString(b, "!"+s), nil
	}
	return jsjson.AppendString(b, s), nil
}

// startsSpecial reports whether s starts with one of !"#$%&'()*+,-.
func startsSpecial(s string) bool {
	return s != "" && s[0] >= '!' && s[0] <= '-'
}

func appendNumber(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"#NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"#Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"#-Infinity"`...)
	}
	return jsjson.AppendNumber(b, f)
}

func (e *encoder) integer(b []byte, n int64, p path) ([]byte, error) {
	if n > maxSafeInteger || n < -maxSafeInteger {
		return nil, e.fail(p, "integer %d is beyond ±(2^53-1), where a JavaScript number loses precision; use *big.Int for a bigint", n)
	}
	return strconv.AppendInt(b, n, 10), nil
}

func (e *encoder) unsigned(b []byte, n uint64, p path) ([]byte, error) {
	if n > maxSafeInteger {
		return nil, e.fail(p, "integer %d is beyond 2^53-1, where a JavaScript number loses precision; use *big.Int for a bigint", n)
	}
	return strconv.AppendUint(b, n, 10), nil
}

// bigintText is "+N" for N ≥ 0 and "-N" for N < 0.
func bigintText(n *big.Int) string {
	if n.Sign() < 0 {
		return n.String()
	}
	return "+" + n.String()
}

// checkSymbol returns why name is not a passable symbol's name, or "".
func checkSymbol(name string) string {
	if len(name) >= 2 && name[:2] == "@@" {
		suffix := name[2:]
		if len(suffix) >= 2 && suffix[:2] == "@@" {
			return "" // the registered symbol Symbol.for(suffix)
		}
		if !wellKnownSymbols[suffix] {
			return "\"@@\" names a well-known symbol, and Symbol." + suffix + " is not one"
		}
	}
	return ""
}

func (e *encoder) slot(b []byte, slot string, promise bool, iface string, p path) ([]byte, error) {
	what := "remotable"
	if promise {
		what = "promise"
	}
	if slot == "" {
		return nil, e.fail(p, "%s without a slot", what)
	}
	if !utf8.ValidString(slot) || !utf8.ValidString(iface) {
		return nil, e.fail(p, "%s slot or iface is not valid UTF-8", what)
	}
	prefix := "$"
	if promise {
		prefix = "&"
	}
	if i, ok := e.slotOf[slot]; ok {
		use := e.kinds[i]
		if use.promise != promise {
			return nil, e.fail(p, "slot %s used as both remotable and promise", quote(slot))
		}
		if use.iface != iface {
			return nil, e.fail(p, "slot %s given two ifaces, %s and %s", quote(slot), quote(use.iface), quote(iface))
		}
		return jsjson.AppendString(b, prefix+strconv.Itoa(i)), nil
	}
	i := len(e.slots)
	e.slots = append(e.slots, slot)
	e.slotOf[slot] = i
	e.kinds = append(e.kinds, slotUse{promise: promise, iface: iface})
	text := prefix + strconv.Itoa(i)
	if iface != "" {
		text += "." + iface
	}
	return jsjson.AppendString(b, text), nil
}

// sortedFields returns r's fields sorted by key in UTF-16 order, failing
// on a repeated key.
func (e *encoder) sortedFields(r Record, p path) ([]Field, error) {
	fields := slices.Clone(r)
	slices.SortFunc(fields, func(a, b Field) int {
		switch {
		case jsjson.LessUTF16(a.Key, b.Key):
			return -1
		case jsjson.LessUTF16(b.Key, a.Key):
			return 1
		}
		return 0
	})
	for i := 1; i < len(fields); i++ {
		if fields[i].Key == fields[i-1].Key {
			return nil, e.fail(p, "record key %s appears twice", quote(fields[i].Key))
		}
	}
	return fields, nil
}

func (e *encoder) record(b []byte, r Record, p path) ([]byte, error) {
	fields, err := e.sortedFields(r, p)
	if err != nil {
		return nil, err
	}
	// JavaScript visits the keys in sorted order, which fixes the slot
	// numbers, but JSON.stringify then lists the resulting object's keys
	// as every JavaScript object lists them: array indices first, in
	// numeric order. So encode in sorted order and write in that order.
	pieces := make([][]byte, len(fields))
	for i, f := range fields {
		fp := p.key(f.Key)
		piece, err := e.string(nil, f.Key, fp)
		if err != nil {
			return nil, err
		}
		piece = append(piece, ':')
		if pieces[i], err = e.value(piece, f.Value, fp); err != nil {
			return nil, err
		}
	}
	b = append(b, '{')
	for i, j := range propertyOrder(fields) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, pieces[j]...)
	}
	return append(b, '}'), nil
}

// propertyOrder returns the indices of fields (sorted by key) in the order
// a JavaScript object lists their keys: array-index keys by numeric value,
// then the others as given.
func propertyOrder(fields []Field) []int {
	order := make([]int, 0, len(fields))
	for i, f := range fields {
		if isArrayIndex(f.Key) {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		x, _ := strconv.ParseUint(fields[a].Key, 10, 64)
		y, _ := strconv.ParseUint(fields[b].Key, 10, 64)
		return cmp.Compare(x, y)
	})
	for i, f := range fields {
		if !isArrayIndex(f.Key) {
			order = append(order, i)
		}
	}
	return order
}

// reservedErrorKeys may not appear in Error.Extra: they are written from
// the other fields, or would change how the record decodes.
var reservedErrorKeys = map[string]bool{"#error": true, "#tag": true, "name": true, "message": true}

func (e *encoder) error(b []byte, x *Error, p path) ([]byte, error) {
	var err error
	b = append(b, `{"#error":`...)
	if b, err = e.string(b, x.Message, append(p, ".message")); err != nil {
		return nil, err
	}
	if x.ErrorID != "" {
		b = append(b, `,"errorId":`...)
		if b, err = e.string(b, x.ErrorID, append(p, ".errorId")); err != nil {
			return nil, err
		}
	}
	name := x.Name
	if name == "" {
		name = "Error"
	}
	b = append(b, `,"name":`...)
	if b, err = e.string(b, name, append(p, ".name")); err != nil {
		return nil, err
	}
	extra, err := e.sortedFields(x.Extra, append(p, ".Extra"))
	if err != nil {
		return nil, err
	}
	for _, i := range propertyOrder(extra) {
		f := extra[i]
		fp := p.key(f.Key)
		if reservedErrorKeys[f.Key] || (f.Key == "errorId" && x.ErrorID != "") {
			return nil, e.fail(fp, "Error.Extra may not hold %s", quote(f.Key))
		}
		if !utf8.ValidString(f.Key) {
			return nil, e.fail(fp, "Error.Extra key is not valid UTF-8")
		}
		b = append(b, ',')
		b = jsjson.AppendString(b, f.Key)
		b = append(b, ':')
		if b, err = e.value(b, f.Value, fp); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func (e *encoder) tagged(b []byte, t Tagged, p path) ([]byte, error) {
	var err error
	b = append(b, `{"#tag":`...)
	if b, err = e.string(b, t.Tag, append(p, ".#tag")); err != nil {
		return nil, err
	}
	b = append(b, `,"payload":`...)
	if b, err = e.value(b, t.Payload, append(p, ".payload")); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}
