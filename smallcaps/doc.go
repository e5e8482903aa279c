// Package smallcaps encodes Go values as the CapData that JavaScript's
// @endo/marshal writes in its "smallcaps" body format (version 1.8.0, with
// the ocap-kernel's options), and decodes such CapData back to Go values,
// with @endo/marshal's decoding rules and errors (kernel-protocol.md §6).
//
// CapData is {"body":"#<json>","slots":[…]}: the body is "#" followed by
// JSON in which strings that start with one of !"#$%&'()*+,- carry a
// meaning (an escaped string, a constant, a bigint, a symbol, a slot
// reference), and slots lists the references (RRefs or krefs) of the
// remotables and promises in the value, first-seen order.
//
// # Value model
//
// Encode accepts, and Decode returns, these Go values:
//
//	JavaScript           Go (Decode returns)      Encode also accepts      body
//	string               string                                            "hi"; "!#x" for "#x"
//	number               float64                  float32, int…, uint…     42, 1e+21, "#NaN", "#-Infinity"
//	                                              (|n| ≤ 2^53-1)
//	bigint               *big.Int                                          "+10", "-7"
//	boolean              bool                                              true
//	null                 nil                                               null
//	undefined            Undefined{}                                       "#undefined"
//	array                []any                                             [1,"a"]
//	record               Record (ordered fields)  map[string]any           {"a":2,"b":1} (keys sorted)
//	symbol               Symbol                                            "%foo", "%@@asyncIterator"
//	remotable            Remotable{Slot, Iface}                            "$0.Alleged: X", then "$0"
//	promise              Promise{Slot}                                     "&0"
//	Error                *Error                   Error                    {"#error":"m","name":"TypeError"}
//	tagged               Tagged{Tag, Payload}                              {"#tag":"t","payload":…}
//
// Details:
//
//   - Numbers: Encode writes JavaScript's Number::toString text; -0 is
//     written 0 and NaN, Infinity and -Infinity as the constants above.
//     Decode reads any JSON number to the nearest float64 (1.0 is 1, 1e400
//     is Infinity) and keeps -0 (JSON "-0").
//   - Records: Encode sorts keys by UTF-16 code units, as JavaScript's sort
//     does, and visits the values (numbering slots) in that order, but then
//     writes the keys as a JavaScript object lists them, which is how
//     JSON.stringify writes @endo/marshal's result: array-index keys ("0",
//     "9", "10", up to 4294967294) first, in numeric order, then the rest
//     sorted. It rejects a Record with a repeated key. Decode accepts keys in
//     any order and returns them in the order a JavaScript object would list
//     them (array-index keys ascending first, then the others as written); a
//     key that occurs twice keeps its first place and its last value, as
//     JSON.parse does. Record keys are escaped and unescaped like strings;
//     a key starting with "#" is refused, and a key must decode to a string.
//   - Symbols: a Symbol is the text after "%": "@@name" for a well-known
//     symbol (Symbol.asyncIterator is "@@asyncIterator"), the key for a
//     registered one (Symbol.for("foo") is "foo"), with a registered key
//     starting with "@@" written "@@@@…".
//   - Remotables and promises carry their slot (the string that goes in
//     slots) and, for a remotable, its interface name ("" for none). Encode
//     deduplicates slots by that string, depth first with record keys in
//     sorted order; a remotable's Iface is written the first time its slot
//     appears. Kernel vats require Iface to be "Alleged: <name>", "DebugName:
//     <name>", "Remotable" or empty (package kernelwire checks that). Decode
//     gives every occurrence of a slot the Iface of its first occurrence,
//     and treats a slot string as opaque: which references may stand for
//     remotables or promises is the caller's business (the JavaScript
//     kernel decides by the text: a slot starting with "p", "kp" or "rp" is
//     a promise). A referenced slot that is empty or not valid UTF-8 is
//     refused, where JavaScript would accept it. Slot indices are read as
//     JavaScript's Number() reads them: "$01", "$ 1" and "$0x1" are slot 1.
//   - Errors: Encode writes "#error" (the message), "errorId" (when
//     ErrorID is set), "name" ("Error" when Name is empty), then Extra's
//     keys, sorted and verbatim. Decode requires a name; a name other than
//     Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError,
//     URIError or AggregateError becomes "Error", as in JavaScript. ErrorID
//     holds a string errorId; every other property (cause, errors, a
//     non-string errorId, …) is kept in Extra with its key as written and
//     its value decoded. *Error implements the error interface.
//   - Tagged values are passed through: neither side checks a tag's
//     payload (copySet, copyBag, …).
//   - Strings must be valid UTF-8 to be encoded. Decoded strings are Go
//     strings: a JSON escape of an unpaired surrogate becomes U+FFFD.
//   - Bodies without the leading "#" (the legacy "capdata" format) are not
//     decoded; the kernel never writes them.
//   - Nesting is limited to MaxDepth arrays, records, errors and tagged
//     values in both directions, which also stops Encode on a cyclic value.
//
// The bytes Encode writes equal @endo/marshal's toCapData output, including
// JSON.stringify's string escaping (only '"', '\\' and control characters;
// no HTML escaping; U+2028 and U+2029 raw). The testdata holds golden
// vectors generated by the real @endo/marshal (interop/endo).
//
// # JSON bridge
//
// Programs in other languages that talk JSON to a daemon can use the
// bridge form instead of smallcaps, where plain JSON values stand for
// themselves and the rest are one-key objects whose key starts with "@":
//
//	Go value                     bridge JSON
//	string, bool, nil            the same JSON value (strings are not escaped)
//	float64 (finite, not -0)     number
//	-0, NaN, ±Infinity           {"@number":"-0"}, {"@number":"NaN"}, {"@number":"Infinity"}, {"@number":"-Infinity"}
//	*big.Int                     {"@bigint":"-7"}
//	Undefined{}                  {"@undefined":true}
//	[]any                        array
//	Record                       object; one whose only key starts with "@" is wrapped: {"@record":{"@x":1}}
//	Symbol                       {"@symbol":"@@asyncIterator"}
//	Remotable                    {"@remotable":{"slot":"ro+1","iface":"Alleged: X"}} (iface omitted when empty)
//	Promise                      {"@promise":{"slot":"rp+1"}}
//	*Error                       {"@error":{"name":"TypeError","message":"m","errorId":"…","extra":{…}}} (errorId and extra optional)
//	Tagged                       {"@tagged":{"tag":"copySet","payload":[1,2]}}
//
// ToJSON and FromJSON convert between Go values and bridge trees (what
// encoding/json reads and writes); DecodeToJSON and EncodeFromJSON go
// straight between CapData and bridge JSON text. Slots are written inline,
// so the bridge form of a value needs no separate slots list.
//
// The package is pure: no I/O.
package smallcaps
