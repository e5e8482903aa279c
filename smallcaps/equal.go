package smallcaps

import (
	"math"
	"math/big"
)

// Equal reports whether a and b are the same value in the model of this
// package: numbers compare as JavaScript's Object.is does (NaN equals NaN,
// -0 differs from 0), records compare as sets of keys whatever their
// order, and the alternative Go forms Encode accepts (ints, map[string]any,
// Error, *Remotable, …) compare equal to the forms Decode returns.
func Equal(a, b any) bool {
	a, b = canonical(a), canonical(b)
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool, string, Undefined, Symbol, Remotable, Promise:
		return a == b
	case float64:
		y, ok := b.(float64)
		if !ok {
			return false
		}
		if math.IsNaN(x) || math.IsNaN(y) {
			return math.IsNaN(x) && math.IsNaN(y)
		}
		return x == y && math.Signbit(x) == math.Signbit(y)
	case *big.Int:
		y, ok := b.(*big.Int)
		return ok && x != nil && y != nil && x.Cmp(y) == 0
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case Record:
		y, ok := b.(Record)
		return ok && equalRecords(x, y)
	case *Error:
		y, ok := b.(*Error)
		return ok && x != nil && y != nil && errorName(x.Name) == errorName(y.Name) && x.Message == y.Message &&
			x.ErrorID == y.ErrorID && equalRecords(x.Extra, y.Extra)
	case Tagged:
		y, ok := b.(Tagged)
		return ok && x.Tag == y.Tag && Equal(x.Payload, y.Payload)
	}
	return false
}

func errorName(n string) string {
	if n == "" {
		return "Error"
	}
	return n
}

func equalRecords(x, y Record) bool {
	if len(x) != len(y) {
		return false
	}
	for _, f := range x {
		v, ok := y.Get(f.Key)
		if !ok || !Equal(f.Value, v) {
			return false
		}
	}
	return true
}

// canonical maps the alternative forms Encode accepts to Decode's forms.
func canonical(v any) any {
	switch x := v.(type) {
	case float32:
		return float64(x)
	case int:
		return float64(x)
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint:
		return float64(x)
	case uint8:
		return float64(x)
	case uint16:
		return float64(x)
	case uint32:
		return float64(x)
	case uint64:
		return float64(x)
	case map[string]any:
		r := make(Record, 0, len(x))
		for k, e := range x {
			r = append(r, Field{k, e})
		}
		return r
	case Error:
		return &x
	case *Remotable:
		if x != nil {
			return *x
		}
	case *Promise:
		if x != nil {
			return *x
		}
	case *Tagged:
		if x != nil {
			return *x
		}
	}
	return v
}
