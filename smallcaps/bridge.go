package smallcaps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// ErrBridge is wrapped by FromJSON's errors: a bridge tree that does not
// stand for a value.
var ErrBridge = errors.New("smallcaps: invalid bridge JSON")

// ToJSON returns the bridge form of v (see the package documentation): a
// tree of nil, bool, string, float64, []any and map[string]any that
// encoding/json writes as is. v may be any value Encode accepts.
func ToJSON(v any) (any, error) { return toJSON(v, nil) }

func toJSON(v any, p path) (any, error) {
	if len(p) > MaxDepth {
		return nil, &EncodeError{Path: p.String(), Detail: fmt.Sprintf("nested deeper than %d (a cycle?)", MaxDepth)}
	}
	one := func(k string, x any) map[string]any { return map[string]any{k: x} }
	switch x := canonical(v).(type) {
	case nil, bool, string:
		return x, nil
	case float64:
		switch {
		case math.IsNaN(x):
			return one("@number", "NaN"), nil
		case math.IsInf(x, 1):
			return one("@number", "Infinity"), nil
		case math.IsInf(x, -1):
			return one("@number", "-Infinity"), nil
		case x == 0 && math.Signbit(x):
			return one("@number", "-0"), nil
		}
		return x, nil
	case *big.Int:
		if x == nil {
			return nil, &EncodeError{Path: p.String(), Detail: "nil *big.Int"}
		}
		return one("@bigint", x.String()), nil
	case Undefined:
		return one("@undefined", true), nil
	case Symbol:
		return one("@symbol", string(x)), nil
	case Remotable:
		r := map[string]any{"slot": x.Slot}
		if x.Iface != "" {
			r["iface"] = x.Iface
		}
		return one("@remotable", r), nil
	case Promise:
		return one("@promise", map[string]any{"slot": x.Slot}), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			j, err := toJSON(e, p.index(i))
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	case Record:
		m, err := recordToJSON(x, p)
		if err != nil {
			return nil, err
		}
		if len(m) == 1 {
			for k := range m {
				if strings.HasPrefix(k, "@") {
					return one("@record", m), nil
				}
			}
		}
		return m, nil
	case *Error:
		if x == nil {
			return nil, &EncodeError{Path: p.String(), Detail: "nil *Error"}
		}
		e := map[string]any{"name": errorName(x.Name), "message": x.Message}
		if x.ErrorID != "" {
			e["errorId"] = x.ErrorID
		}
		if len(x.Extra) > 0 {
			m, err := recordToJSON(x.Extra, append(p, ".Extra"))
			if err != nil {
				return nil, err
			}
			e["extra"] = m
		}
		return one("@error", e), nil
	case Tagged:
		payload, err := toJSON(x.Payload, append(p, ".payload"))
		if err != nil {
			return nil, err
		}
		return one("@tagged", map[string]any{"tag": x.Tag, "payload": payload}), nil
	}
	return nil, &EncodeError{Path: p.String(), Detail: fmt.Sprintf("unsupported Go type %T", v)}
}

func recordToJSON(r Record, p path) (map[string]any, error) {
	m := make(map[string]any, len(r))
	for _, f := range r {
		if _, dup := m[f.Key]; dup {
			return nil, &EncodeError{Path: p.String(), Detail: fmt.Sprintf("record key %s appears twice", quote(f.Key))}
		}
		j, err := toJSON(f.Value, p.key(f.Key))
		if err != nil {
			return nil, err
		}
		m[f.Key] = j
	}
	return m, nil
}

// FromJSON returns the value that the bridge tree j stands for. j is what
// encoding/json decodes into an any (numbers as float64 or, with
// UseNumber, json.Number). Records come back with their keys sorted.
func FromJSON(j any) (any, error) { return fromJSON(j, nil) }

func bridgeErr(p path, format string, args ...any) error {
	return fmt.Errorf("%w at %s: %s", ErrBridge, p, fmt.Sprintf(format, args...))
}

func fromJSON(j any, p path) (any, error) {
	if len(p) > MaxDepth {
		return nil, bridgeErr(p, "nested deeper than %d", MaxDepth)
	}
	switch x := j.(type) {
	case nil, bool, string, float64:
		return x, nil
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, bridgeErr(p, "number %s: %v", x, err)
		}
		return f, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			v, err := fromJSON(e, p.index(i))
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, e := range x {
				if strings.HasPrefix(k, "@") {
					return special(k, e, p)
				}
			}
		}
		return recordFromJSON(x, p)
	}
	return nil, bridgeErr(p, "unsupported Go type %T", j)
}

func recordFromJSON(m map[string]any, p path) (Record, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r := make(Record, 0, len(keys))
	for _, k := range keys {
		v, err := fromJSON(m[k], p.key(k))
		if err != nil {
			return nil, err
		}
		r = append(r, Field{k, v})
	}
	return r, nil
}

// special decodes a one-key "@…" bridge object.
func special(kind string, x any, p path) (any, error) {
	p = append(p, "."+kind)
	str := func() (string, error) {
		s, ok := x.(string)
		if !ok {
			return "", bridgeErr(p, "%s needs a string, not %T", kind, x)
		}
		return s, nil
	}
	obj := func(allowed ...string) (map[string]any, error) {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, bridgeErr(p, "%s needs an object, not %T", kind, x)
		}
		for k := range m {
			if !slices.Contains(allowed, k) {
				return nil, bridgeErr(p, "%s has an unexpected property %s", kind, quote(k))
			}
		}
		return m, nil
	}
	field := func(m map[string]any, k string, required bool) (string, error) {
		v, ok := m[k]
		if !ok {
			if required {
				return "", bridgeErr(p, "%s needs %s", kind, quote(k))
			}
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", bridgeErr(p, "%s.%s must be a string, not %T", kind, k, v)
		}
		return s, nil
	}
	switch kind {
	case "@number":
		s, err := str()
		if err != nil {
			return nil, err
		}
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		case "-0":
			return math.Copysign(0, -1), nil
		}
		return nil, bridgeErr(p, "@number %s is not NaN, Infinity, -Infinity or -0", quote(s))
	case "@bigint":
		s, err := str()
		if err != nil {
			return nil, err
		}
		n, ok := new(big.Int).SetString(s, 10)
		if !ok || strings.HasPrefix(s, "+") {
			return nil, bridgeErr(p, "@bigint %s is not a decimal integer", quote(s))
		}
		return n, nil
	case "@undefined":
		if x != true {
			return nil, bridgeErr(p, "@undefined must be true")
		}
		return Undefined{}, nil
	case "@symbol":
		s, err := str()
		if err != nil {
			return nil, err
		}
		if why := checkSymbol(s); why != "" {
			return nil, bridgeErr(p, "@symbol %s: %s", quote(s), why)
		}
		return Symbol(s), nil
	case "@remotable":
		m, err := obj("slot", "iface")
		if err != nil {
			return nil, err
		}
		slot, err := field(m, "slot", true)
		if err != nil {
			return nil, err
		}
		iface, err := field(m, "iface", false)
		if err != nil {
			return nil, err
		}
		return Remotable{Slot: slot, Iface: iface}, nil
	case "@promise":
		m, err := obj("slot")
		if err != nil {
			return nil, err
		}
		slot, err := field(m, "slot", true)
		if err != nil {
			return nil, err
		}
		return Promise{Slot: slot}, nil
	case "@error":
		m, err := obj("name", "message", "errorId", "extra")
		if err != nil {
			return nil, err
		}
		e := &Error{}
		if e.Name, err = field(m, "name", false); err != nil {
			return nil, err
		}
		if e.Message, err = field(m, "message", true); err != nil {
			return nil, err
		}
		if e.ErrorID, err = field(m, "errorId", false); err != nil {
			return nil, err
		}
		if extra, ok := m["extra"]; ok {
			em, ok := extra.(map[string]any)
			if !ok {
				return nil, bridgeErr(p, "@error.extra must be an object, not %T", extra)
			}
			if e.Extra, err = recordFromJSON(em, append(p, ".extra")); err != nil {
				return nil, err
			}
		}
		return e, nil
	case "@tagged":
		m, err := obj("tag", "payload")
		if err != nil {
			return nil, err
		}
		tag, err := field(m, "tag", true)
		if err != nil {
			return nil, err
		}
		raw, ok := m["payload"]
		if !ok {
			return nil, bridgeErr(p, "@tagged needs \"payload\"")
		}
		payload, err := fromJSON(raw, append(p, ".payload"))
		if err != nil {
			return nil, err
		}
		return Tagged{Tag: tag, Payload: payload}, nil
	case "@record":
		m, ok := x.(map[string]any)
		if !ok {
			return nil, bridgeErr(p, "@record needs an object, not %T", x)
		}
		return recordFromJSON(m, p)
	}
	return nil, bridgeErr(p, "unknown bridge type %s", quote(kind))
}

// DecodeToJSON decodes cd and returns its value's bridge JSON text.
func DecodeToJSON(cd CapData) ([]byte, error) {
	v, err := Decode(cd)
	if err != nil {
		return nil, err
	}
	j, err := ToJSON(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// EncodeFromJSON reads bridge JSON text and returns its value's CapData.
func EncodeFromJSON(data []byte) (CapData, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var j any
	if err := dec.Decode(&j); err != nil {
		return CapData{}, fmt.Errorf("%w: %v", ErrBridge, err)
	}
	if dec.More() {
		return CapData{}, fmt.Errorf("%w: text after the value", ErrBridge)
	}
	v, err := FromJSON(j)
	if err != nil {
		return CapData{}, err
	}
	return Encode(v)
}
