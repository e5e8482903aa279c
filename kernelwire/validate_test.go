package kernelwire

import (
	"errors"
	"strings"
	"testing"

	"github.com/ocapnet/ocapnet/smallcaps"
)

// TestValidatorRefusesPoison: every §3.7 poison, and the other refusals
// ValidateOutgoing documents, is refused with a reason; and the same
// message with the fault mended is accepted, so each case fails for the
// reason it names.
func TestValidatorRefusesPoison(t *testing.T) {
	ok := func(t *testing.T, v any) smallcaps.CapData { return capData(t, v) }
	methargs := func(t *testing.T) smallcaps.CapData { return ok(t, []any{"m", []any{}}) }
	state := func() *tables {
		s := newTables()
		s.importRef("ro+1")
		s.importRef("ro+2")
		s.importRef("rp+2")
		s.fresh[5] = true
		s.resolvable[*ref("rp-2")] = true
		s.resolvable[*ref("rp+3")] = true
		s.awaiting["k"] = true
		s.dropped[1] = true
		s.peerDropped[4] = true
		return s
	}
	cases := []struct {
		name  string
		bad   func(t *testing.T) Message
		good  func(t *testing.T) Message
		state bool // the refusal needs the tables
		why   string
	}{
		{"message without result", func(t *testing.T) Message { return &Send{Target: *ref("ro-1"), Methargs: methargs(t)} },
			func(t *testing.T) Message {
				return &Send{Target: *ref("ro-1"), Methargs: methargs(t), Result: ref("rp+5")}
			}, false, "result must be a string"},
		{"message with null result", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: methargs(t), NullResult: true}
		}, nil, false, "result must be a string"},
		{"result not Go's promise", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: methargs(t), Result: ref("rp-2")}
		}, nil, false, "not Go's own promise"},
		{"result is an object", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: methargs(t), Result: ref("ro+5")}
		}, nil, false, "not Go's own promise"},
		{"stale result", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: methargs(t), Result: ref("rp+6")}
		}, nil, true, "not a fresh promise"},
		{"result also a slot", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Promise{Slot: "rp+5"}}}), Result: ref("rp+5")}
		}, nil, false, "also appears"},
		{"target is Go's own", func(t *testing.T) Message {
			return &Send{Target: *ref("ro+1"), Methargs: methargs(t), Result: ref("rp+5")}
		}, nil, false, "route the message back"},
		{"unknown - target", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-99"), Methargs: methargs(t), Result: ref("rp+5")}
		}, nil, true, "ro-99 is not an export reference"},
		{"unknown - slot", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Remotable{Slot: "ro-7"}}}), Result: ref("rp+5")}
		}, func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Remotable{Slot: "ro-1"}}}), Result: ref("rp+5")}
		}, true, "ro-7 is not an export reference"},
		{"methargs not [method, args]", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, "m"), Result: ref("rp+5")}
		}, nil, false, "not [method, args]"},
		{"method not a string", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{1, []any{}}), Result: ref("rp+5")}
		}, func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{smallcaps.AsyncIterator, []any{}}), Result: ref("rp+5")}
		}, false, "not a string or symbol"},
		{"args not an array", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", "x"}), Result: ref("rp+5")}
		}, nil, false, "not an array"},
		{"invalid smallcaps", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: smallcaps.CapData{Body: `#["m",["#foo"]]`}, Result: ref("rp+5")}
		}, nil, false, "unknown constant"},
		{"non-canonical smallcaps", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: smallcaps.CapData{Body: `#["m",[{"b":1,"a":2}]]`}, Result: ref("rp+5")}
		}, nil, false, "not canonical"},
		{"legacy capdata", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: smallcaps.CapData{Body: `["m",[]]`}, Result: ref("rp+5")}
		}, nil, false, "no leading #"},
		{"slot not an RRef", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Remotable{Slot: "ko1"}}}), Result: ref("rp+5")}
		}, nil, false, "not an RRef"},
		{"$ on a promise slot", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Remotable{Slot: "rp+9"}}}), Result: ref("rp+5")}
		}, nil, false, "not an object reference"},
		{"& on an object slot", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Promise{Slot: "ro+9"}}}), Result: ref("rp+5")}
		}, nil, false, "not a promise reference"},
		{"iface a vat refuses", func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Remotable{Slot: "ro+9", Iface: "Greeter"}}}), Result: ref("rp+5")}
		}, func(t *testing.T) Message {
			return &Send{Target: *ref("ro-1"), Methargs: ok(t, []any{"m", []any{smallcaps.Remotable{Slot: "ro+9", Iface: "Alleged: Greeter"}}}), Result: ref("rp+5")}
		}, false, "a vat accepts only"},
		{"notify of a resolved promise", func(t *testing.T) Message {
			return &Notify{Resolutions: []Resolution{{Promise: *ref("rp+4"), Data: ok(t, 1)}}}
		}, func(t *testing.T) Message {
			return &Notify{Resolutions: []Resolution{{Promise: *ref("rp+3"), Data: ok(t, 1)}}}
		}, true, "does not decide"},
		{"notify of a promise Go does not hold", func(t *testing.T) Message {
			return &Notify{Resolutions: []Resolution{{Promise: *ref("rp-8"), Data: ok(t, 1)}}}
		}, func(t *testing.T) Message {
			return &Notify{Resolutions: []Resolution{{Promise: *ref("rp-2"), Data: ok(t, 1)}}}
		}, true, "rp-8 is not an export reference"},
		{"notify twice in one frame", func(t *testing.T) Message {
			return &Notify{Resolutions: []Resolution{{Promise: *ref("rp-2"), Data: ok(t, 1)}, {Promise: *ref("rp-2"), Data: ok(t, 2)}}}
		}, nil, false, "a second time"},
		{"notify of an object", func(t *testing.T) Message {
			return &Notify{Resolutions: []Resolution{{Promise: *ref("ro-1"), Data: ok(t, 1)}}}
		}, nil, false, "not a promise"},
		{"empty notify", func(*testing.T) Message { return &Notify{} }, nil, false, "no resolutions"},
		{"notify with bad data", func(t *testing.T) Message {
			return &Notify{Resolutions: []Resolution{{Promise: *ref("rp-2"), Data: smallcaps.CapData{Body: `#"*"`}}}}
		}, nil, false, "reserved"},
		{"unknown reply key", func(*testing.T) Message { return &RedeemURLReply{OK: true, ReplyKey: "77", Ref: *ref("ro+1")} },
			func(*testing.T) Message { return &RedeemURLReply{OK: true, ReplyKey: "k", Ref: *ref("ro+1")} }, true, "unknown URL redemption reply key"},
		{"reply with a peer ref", func(*testing.T) Message { return &RedeemURLReply{OK: true, ReplyKey: "k", Ref: *ref("ro-1")} }, nil, false, "not Go's own"},
		{"reply with empty key", func(*testing.T) Message { return &RedeemURLReply{OK: true, Ref: *ref("ro+1")} }, nil, false, "empty reply key"},
		{"failure without text", func(*testing.T) Message { return &RedeemURLReply{ReplyKey: "k"} },
			func(*testing.T) Message { return &RedeemURLReply{ReplyKey: "k", Error: "bad ocap URL"} }, false, "empty failure text"},
		{"redeemURL without key", func(*testing.T) Message { return &RedeemURL{URL: "ocap:zA@p"} },
			func(*testing.T) Message { return &RedeemURL{URL: "ocap:zA@p", ReplyKey: "1"} }, false, "empty URL or reply key"},
		{"retireExports still reachable", func(*testing.T) Message { return &RetireExports{Refs: []RRef{*ref("ro-2")}} },
			func(*testing.T) Message { return &RetireExports{Refs: []RRef{*ref("ro-1")}} }, true, "still reachable"},
		{"retireExports of an unknown ref", func(*testing.T) Message {
			s := *ref("ro-1")
			s.N = 3
			return &RetireExports{Refs: []RRef{s}}
		}, func(*testing.T) Message { return &RetireExports{Refs: []RRef{*ref("ro-1")}} }, true, "not an export reference"},
		{"retireImports still reachable", func(*testing.T) Message { return &RetireImports{Refs: []RRef{*ref("ro+1")}} },
			func(*testing.T) Message { return &RetireImports{Refs: []RRef{*ref("ro+4")}} }, true, "still reachable"},
		{"retireImports of a peer ref", func(*testing.T) Message { return &RetireImports{Refs: []RRef{*ref("ro-1")}} }, nil, false, "not Go's own"},
		{"dropExports of Go's ref", func(*testing.T) Message { return &DropExports{Refs: []RRef{*ref("ro+1")}} },
			func(*testing.T) Message { return &DropExports{Refs: []RRef{*ref("ro-1")}} }, false, "not the peer's"},
		{"dropExports of a promise", func(*testing.T) Message { return &DropExports{Refs: []RRef{*ref("rp-2")}} }, nil, false, "objects only"},
		{"empty GC list", func(*testing.T) Message { return &DropExports{} }, nil, false, "empty reference list"},
		{"GC ref twice", func(*testing.T) Message { return &DropExports{Refs: []RRef{*ref("ro-1"), *ref("ro-1")}} }, nil, false, "twice"},
		{"unwritable ref", func(*testing.T) Message { return &DropExports{Refs: []RRef{{Kind: Object}}} }, nil, false, "out of range"},
		{"bad kind", func(*testing.T) Message { return &DropExports{Refs: []RRef{{Kind: 'x', N: 1}}} }, nil, false, "neither object nor promise"},
		{"invalid UTF-8", func(*testing.T) Message { return &RedeemURL{URL: "ocap:\xff@p", ReplyKey: "1"} }, nil, false, "UTF-8"},
		{"nil message", func(*testing.T) Message { return nil }, nil, false, "nil message"},
	}
	for _, c := range cases {
		err := ValidateOutgoing(c.bad(t), state())
		if !errors.Is(err, ErrPoison) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: ValidateOutgoing = %v, want ErrPoison with %q", c.name, err, c.why)
		}
		if !c.state {
			if err := ValidateOutgoing(c.bad(t), nil); !errors.Is(err, ErrPoison) {
				t.Errorf("%s: not refused without State: %v", c.name, err)
			}
		} else if err := ValidateOutgoing(c.bad(t), nil); err != nil {
			t.Errorf("%s: refused without State, although only the tables tell: %v", c.name, err)
		}
		if c.good != nil {
			if err := ValidateOutgoing(c.good(t), state()); err != nil {
				t.Errorf("%s: mended message refused: %v", c.name, err)
			}
		}
		if _, _, err := EncodeOutgoing(c.bad(t), state()); !errors.Is(err, ErrPoison) {
			t.Errorf("%s: EncodeOutgoing = %v", c.name, err)
		}
	}
}

func TestParseRRef(t *testing.T) {
	for _, s := range []string{"ro+1", "ro-1", "rp+9007199254740991", "rp-42"} {
		r, err := ParseRRef(s)
		if err != nil || r.String() != s {
			t.Errorf("ParseRRef(%q) = %v, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "ro+", "ro+0", "ro+01", "o+1", "p-2", "rx+1", "ro*1", "ro+1a", "ro+9007199254740992", "ro+99999999999999999999", "ko1", " ro+1"} {
		if _, err := ParseRRef(s); !errors.Is(err, ErrBadRRef) {
			t.Errorf("ParseRRef(%q) = %v, want ErrBadRRef", s, err)
		}
	}
	r := OutRef(Object, Local, 3)
	if r.String() != "ro+3" || r.Inverted().String() != "ro-3" || OutRef(Promise, Remote, 3).String() != "rp-3" {
		t.Errorf("OutRef: %v %v", r, r.Inverted())
	}
	if MustParseRRef("ro+3").AllocatedBy() != Remote || MustParseRRef("ro-3").AllocatedBy() != Local {
		t.Error("AllocatedBy")
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ method, params, want string }{
		{"bogus", `[]`, `unknown remote message type "bogus"`},
		{"deliver", `["bogus"]`, `unknown remote delivery method "bogus"`},
		{"deliver", `{}`, "params is a object, not an array"},
		{"deliver", `[]`, "delivery method, is missing"},
		{"deliver", ``, "deliver params"},
		{"deliver", `["message"]`, "target is missing"},
		{"deliver", `["message","ro+x",{}]`, "target: not an RRef"},
		{"deliver", `["message","ro-1"]`, "the message is missing"},
		{"deliver", `["message","ro-1",{}]`, "methargs is missing"},
		{"deliver", `["message","ro-1",{"methargs":{"body":1,"slots":[]}}]`, "methargs.body is missing or not a string"},
		{"deliver", `["message","ro-1",{"methargs":{"body":"#1","slots":{}}}]`, "methargs.slots is missing or not an array"},
		{"deliver", `["message","ro-1",{"methargs":{"body":"#1","slots":["ko1"]}}]`, "methargs.slots[0]: not an RRef"},
		{"deliver", `["message","ro-1",{"methargs":{"body":"#1","body":"#2","slots":[]}}]`, "key \"body\" twice"},
		{"deliver", `["message","ro-1",{"methargs":{"body":"#1","slots":[]},"result":5}]`, "result is a number"},
		{"deliver", `["notify",[["rp-1","false",{"body":"#1","slots":[]}]]]`, "rejected is a string, not a boolean"},
		{"deliver", `["notify",[["rp-1",false]]]`, "resolution 0 is not [promise, rejected, data]"},
		{"deliver", `["notify",{}]`, "the resolutions is a object"},
		{"deliver", `["dropExports",["ro+1",7]]`, "ref 1 is a number"},
		{"redeemURL", `["ocap:x@y"]`, "the reply key is missing"},
		{"redeemURL", `["ocap:x@y",1]`, "the reply key is a number"},
		{"redeemURLReply", `[true,"1"]`, "the reference or error text is missing"},
		{"redeemURLReply", `[true,"1","xo+1"]`, "the reference: not an RRef"},
		{"redeemURLReply", `[false,"1",5]`, "the error text is a number"},
		{"redeemURLReply", `["yes","1","ro+1"]`, "the success flag is a string"},
		{"deliver", `[` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `]`, "nested deeper"},
	} {
		_, err := Decode(c.method, []byte(c.params))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Decode(%s, %s) = %v, want …%s…", c.method, c.params, err, c.want)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownMethod) && !errors.Is(err, ErrUnknownDelivery) {
			t.Errorf("Decode(%s, %s): error %v has no category", c.method, c.params, err)
		}
	}
	// As loose as JavaScript: extra elements and unknown keys are ignored,
	// and a null or missing result is accepted.
	for _, c := range []struct{ method, params string }{
		{"deliver", `["bringOutYourDead",1,2]`},
		{"deliver", `["message","ro-1",{"methargs":{"body":"#1","slots":[],"x":1},"result":null,"y":2}]`},
		{"deliver", `["message","ro-1",{"methargs":{"body":"#1","slots":[]}}]`},
		{"redeemURL", `["u","k","extra"]`},
	} {
		if _, err := Decode(c.method, []byte(c.params)); err != nil {
			t.Errorf("Decode(%s, %s): %v", c.method, c.params, err)
		}
	}
}
