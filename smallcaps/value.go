package smallcaps

import (
	"github.com/ocapnet/ocapnet/internal/jsjson"
)

// MaxDepth is how deeply arrays, records, errors and tagged values may nest
// in a value that Encode or Decode handles.
const MaxDepth = 1000

// CapData is a marshalled value: a smallcaps body and the slots its "$i"
// and "&i" references index.
type CapData struct {
	Body  string
	Slots []string
}

// AppendJSON appends cd as JavaScript's JSON.stringify writes a CapData
// object: {"body":…,"slots":[…]} (slots [] when empty).
func (cd CapData) AppendJSON(b []byte) []byte {
	b = append(b, `{"body":`...)
	b = jsjson.AppendString(b, cd.Body)
	b = append(b, `,"slots":[`...)
	for i, s := range cd.Slots {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsjson.AppendString(b, s)
	}
	return append(b, "]}"...)
}

// MarshalJSON implements json.Marshaler with AppendJSON's bytes.
func (cd CapData) MarshalJSON() ([]byte, error) { return cd.AppendJSON(nil), nil }

// Undefined is JavaScript's undefined.
type Undefined struct{}

// Symbol is a passable JavaScript symbol, named as in the body after "%":
// "@@name" for the well-known Symbol.name, otherwise the key of the
// registered symbol Symbol.for(key), with a key that starts with "@@"
// written with another "@@" in front.
type Symbol string

// AsyncIterator is Symbol.asyncIterator, which the kernel uses as a method
// name.
const AsyncIterator Symbol = "@@asyncIterator"

// wellKnownSymbols are the names of the symbol-valued properties of Symbol
// in Node.js 22 under SES (ownKeys(Symbol)), the only "@@" names a
// JavaScript decoder accepts.
var wellKnownSymbols = map[string]bool{
	"asyncIterator": true, "hasInstance": true, "isConcatSpreadable": true, "iterator": true,
	"match": true, "matchAll": true, "replace": true, "search": true, "species": true, "split": true,
	"toPrimitive": true, "toStringTag": true, "unscopables": true, "dispose": true, "asyncDispose": true,
}

// Field is one property of a Record.
type Field struct {
	Key   string
	Value any
}

// Record is a JavaScript copyRecord: string-keyed properties, in order.
// The order does not matter to Encode (it sorts) nor to Equal.
type Record []Field

// Get returns the value of key and whether the record has it.
func (r Record) Get(key string) (any, bool) {
	for _, f := range r {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// Remotable is a reference to a remote object (pass-by-reference), in the
// body "$i.Iface" the first time and "$i" after.
type Remotable struct {
	// Slot is the reference that goes in CapData.Slots, e.g. "ro+1".
	Slot string
	// Iface is the interface name, e.g. "Alleged: Greeter"; "" for none.
	Iface string
}

// Promise is a reference to a promise, "&i" in the body.
type Promise struct {
	// Slot is the reference that goes in CapData.Slots, e.g. "rp+1".
	Slot string
}

// Error is a passable JavaScript error.
type Error struct {
	// Name is the error's constructor name: "Error", "TypeError", … ("" is
	// encoded as "Error").
	Name string
	// Message is the error's message.
	Message string
	// ErrorID is the errorId a vat's marshal adds, e.g.
	// "error:liveSlots:v1#70001"; "" for none.
	ErrorID string
	// Extra holds any other properties of an encoded error (cause, errors,
	// …), keys verbatim (not escaped).
	Extra Record
}

// Error implements the error interface: "Name: Message".
func (e *Error) Error() string {
	name := e.Name
	if name == "" {
		name = "Error"
	}
	return name + ": " + e.Message
}

// errorNames are the constructors a JavaScript decoder recognises
// (@endo/pass-style getErrorConstructor); other names decode as Error.
var errorNames = map[string]bool{
	"Error": true, "EvalError": true, "RangeError": true, "ReferenceError": true,
	"SyntaxError": true, "TypeError": true, "URIError": true, "AggregateError": true,
}

// Tagged is a tagged value (copySet, copyBag, copyMap, a pattern, …),
// passed through without checking its payload.
type Tagged struct {
	Tag     string
	Payload any
}
