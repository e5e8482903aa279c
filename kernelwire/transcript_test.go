package kernelwire

import (
	"reflect"
	"testing"

	"github.com/ocapnet/ocapnet/smallcaps"
	"github.com/ocapnet/ocapnet/wire"
)

// tables is a minimal stand-in for an endpoint's per-peer tables, enough
// for ValidateOutgoing.
type tables struct {
	imports     map[[2]uint64]bool // {kind, n} of the peer's allocations Go holds
	resolvable  map[RRef]bool      // promises Go decides and has not resolved, as sent
	fresh       map[uint64]bool    // Go promises allocated for a result, not yet sent
	awaiting    map[string]bool    // redeemURL keys the peer waits on
	dropped     map[uint64]bool    // peer objects Go has dropped
	peerDropped map[uint64]bool    // Go objects the peer has dropped
}

func newTables() *tables {
	return &tables{
		imports: map[[2]uint64]bool{}, resolvable: map[RRef]bool{}, fresh: map[uint64]bool{},
		awaiting: map[string]bool{}, dropped: map[uint64]bool{}, peerDropped: map[uint64]bool{},
	}
}

func (t *tables) Imported(k Kind, n uint64) bool { return t.imports[[2]uint64{uint64(k), n}] }
func (t *tables) CanResolve(p RRef) bool         { return t.resolvable[p] }
func (t *tables) FreshResult(n uint64) bool      { return t.fresh[n] }
func (t *tables) AwaitingReply(key string) bool  { return t.awaiting[key] }
func (t *tables) DroppedImport(n uint64) bool    { return t.dropped[n] }
func (t *tables) PeerDroppedExport(n uint64) bool {
	return t.peerDropped[n]
}

func (t *tables) importRef(s string) {
	r := MustParseRRef(s)
	t.imports[[2]uint64{uint64(r.Kind), r.N}] = true
}

func capData(t *testing.T, v any) smallcaps.CapData {
	t.Helper()
	cd, err := smallcaps.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	if cd.Slots == nil {
		cd.Slots = []string{}
	}
	return cd
}

func ref(s string) *RRef { r := MustParseRRef(s); return &r }

// step is one captured frame of kernel-protocol.md §9. For Go's frames,
// build makes the message from Go values and the test checks that Go
// writes exactly the captured bytes; for the JavaScript kernel's frames,
// want is what Decode must give, and re-encoding must give the bytes back.
type step struct {
	name   string
	frame  string
	build  func(t *testing.T) Message // Go → JS
	want   Message                    // JS → Go
	before func(*tables)              // endpoint state changes before the frame
}

func transcript() []step {
	peerGo := "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	return []step{
		{name: "9.1 Go redeems a JS URL", frame: `{"seq":1,"method":"redeemURL","params":["ocap:zi9h…VhX9@12D3KooWH3uV…298L3","1"]}`,
			build: func(*testing.T) Message {
				return &RedeemURL{URL: "ocap:zi9h…VhX9@12D3KooWH3uV…298L3", ReplyKey: "1"}
			}},
		{name: "9.1 reply", frame: `{"seq":1,"ack":1,"method":"redeemURLReply","params":[true,"1","ro+1"]}`,
			want: &RedeemURLReply{OK: true, ReplyKey: "1", Ref: *ref("ro+1")}},
		{name: "9.1 Go calls greet", frame: `{"seq":2,"ack":1,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"greet\",[\"Gopher\"]]","slots":[]},"result":"rp+1"}]}`,
			before: func(s *tables) { s.importRef("ro+1"); s.fresh[1] = true },
			build: func(t *testing.T) Message {
				return &Send{Target: OutRef(Object, Remote, 1), Methargs: capData(t, []any{"greet", []any{"Gopher"}}), Result: ref("rp+1")}
			}},
		{name: "9.1 result", frame: `{"seq":2,"ack":2,"method":"deliver","params":["notify",[["rp-1",false,{"body":"#\"Hello, Gopher!\"","slots":[]}]]]}`,
			want: &Notify{Resolutions: []Resolution{{Promise: *ref("rp-1"), Data: smallcaps.CapData{Body: `#"Hello, Gopher!"`, Slots: []string{}}}}}},
		{name: "9.2 Go passes its object", frame: `{"seq":3,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"echo\",[\"$0.Alleged: GoThing\"]]","slots":["ro+1"]},"result":"rp+2"}]}`,
			before: func(s *tables) { s.fresh[2] = true },
			build: func(t *testing.T) Message {
				thing := smallcaps.Remotable{Slot: OutRef(Object, Local, 1).String(), Iface: "Alleged: GoThing"}
				return &Send{Target: *ref("ro-1"), Methargs: capData(t, []any{"echo", []any{thing}}), Result: ref("rp+2")}
			}},
		{name: "9.2 JS returns it", frame: `{"seq":3,"ack":3,"method":"deliver","params":["notify",[["rp-2",false,{"body":"#\"$0.Alleged: GoThing\"","slots":["ro-1"]}]]]}`,
			want: &Notify{Resolutions: []Resolution{{Promise: *ref("rp-2"), Data: smallcaps.CapData{Body: `#"$0.Alleged: GoThing"`, Slots: []string{"ro-1"}}}}}},
		{name: "9.3 JS calls Go", frame: `{"seq":4,"ack":3,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"from JS\",{\"n\":\"+1\",\"o\":\"$0.Alleged: greeter\"}]]","slots":["ro+1"]},"result":"rp+1"}]}`,
			want: &Send{Target: *ref("ro-1"), Methargs: smallcaps.CapData{Body: `#["hello",["from JS",{"n":"+1","o":"$0.Alleged: greeter"}]]`, Slots: []string{"ro+1"}}, Result: ref("rp+1")}},
		{name: "9.3 Go resolves", frame: `{"seq":4,"ack":3,"method":"deliver","params":["notify",[["rp-1",false,{"body":"#\"hi from Go\"","slots":[]}]]]}`,
			before: func(s *tables) { s.importRef("rp+1"); s.resolvable[*ref("rp-1")] = true },
			build: func(t *testing.T) Message {
				return &Notify{Resolutions: []Resolution{{Promise: OutRef(Promise, Remote, 1), Data: capData(t, "hi from Go")}}}
			}},
		{name: "9.4 JS calls boom", frame: `{"seq":5,"ack":4,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"boom\",[]]","slots":[]},"result":"rp+2"}]}`,
			want: &Send{Target: *ref("ro-1"), Methargs: smallcaps.CapData{Body: `#["boom",[]]`, Slots: []string{}}, Result: ref("rp+2")}},
		{name: "9.4 Go rejects", frame: `{"seq":5,"method":"deliver","params":["notify",[["rp-2",true,{"body":"#{\"#error\":\"go says no\",\"name\":\"TypeError\"}","slots":[]}]]]}`,
			before: func(s *tables) { s.importRef("rp+2"); s.resolvable[*ref("rp-2")] = true },
			build: func(t *testing.T) Message {
				return &Notify{Resolutions: []Resolution{{Promise: *ref("rp-2"), Rejected: true, Data: capData(t, &smallcaps.Error{Name: "TypeError", Message: "go says no"})}}}
			}},
		{name: "9.4 kernel-service failure (JS→JS)", frame: `{"seq":3,"ack":3,"method":"deliver","params":["notify",[["rp-2",true,{"body":"#{\"#error\":\"[KERNEL:DELIVERY_FAILED] nope\",\"name\":\"Error\"}","slots":[]}]]]}`,
			want: &Notify{Resolutions: []Resolution{{Promise: *ref("rp-2"), Rejected: true, Data: smallcaps.CapData{Body: `#{"#error":"[KERNEL:DELIVERY_FAILED] nope","name":"Error"}`, Slots: []string{}}}}}},
		{name: "9.5 JS calls later", frame: `{"seq":6,"ack":5,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"later\",[]]","slots":[]},"result":"rp+3"}]}`,
			want: &Send{Target: *ref("ro-1"), Methargs: smallcaps.CapData{Body: `#["later",[]]`, Slots: []string{}}, Result: ref("rp+3")}},
		{name: "9.5 Go resolves to its promise", frame: `{"seq":6,"method":"deliver","params":["notify",[["rp-3",false,{"body":"#\"&0\"","slots":["rp+7"]}]]]}`,
			before: func(s *tables) { s.importRef("rp+3"); s.resolvable[*ref("rp-3")] = true },
			build: func(t *testing.T) Message {
				return &Notify{Resolutions: []Resolution{{Promise: *ref("rp-3"), Data: capData(t, smallcaps.Promise{Slot: OutRef(Promise, Local, 7).String()})}}}
			}},
		{name: "9.5 Go resolves that promise", frame: `{"seq":7,"method":"deliver","params":["notify",[["rp+7",false,{"body":"#42","slots":[]}]]]}`,
			before: func(s *tables) { delete(s.resolvable, *ref("rp-3")); s.resolvable[*ref("rp+7")] = true },
			build: func(t *testing.T) Message {
				return &Notify{Resolutions: []Resolution{{Promise: OutRef(Promise, Local, 7), Data: capData(t, 42)}}}
			}},
		{name: "9.5 the echo", frame: `{"seq":7,"ack":7,"method":"deliver","params":["notify",[["rp-7",false,{"body":"#42","slots":[]}]]]}`,
			want: &Notify{Resolutions: []Resolution{{Promise: *ref("rp-7"), Data: smallcaps.CapData{Body: "#42", Slots: []string{}}}}}},
		{name: "9.7 JS redeems a Go URL", frame: `{"seq":8,"ack":7,"method":"redeemURL","params":["ocap:zGoOpaqueOid123@` + peerGo + `","1"]}`,
			want: &RedeemURL{URL: "ocap:zGoOpaqueOid123@" + peerGo, ReplyKey: "1"}},
		{name: "9.7 Go answers", frame: `{"seq":8,"method":"redeemURLReply","params":[true,"1","ro+9"]}`,
			before: func(s *tables) { s.awaiting["1"] = true },
			build: func(*testing.T) Message {
				return &RedeemURLReply{OK: true, ReplyKey: "1", Ref: OutRef(Object, Local, 9)}
			}},
		{name: "9.7 JS redeems a bad URL", frame: `{"seq":9,"ack":8,"method":"redeemURL","params":["ocap:zBad@` + peerGo + `","2"]}`,
			want: &RedeemURL{URL: "ocap:zBad@" + peerGo, ReplyKey: "2"}},
		{name: "9.7 Go fails it", frame: `{"seq":9,"method":"redeemURLReply","params":[false,"2","ocapURL has bad object reference"]}`,
			before: func(s *tables) { delete(s.awaiting, "1"); s.awaiting["2"] = true },
			build: func(*testing.T) Message {
				return &RedeemURLReply{ReplyKey: "2", Error: "ocapURL has bad object reference"}
			}},
		{name: "9.8 (JS→JS) resolution to an object", frame: `{"seq":6,"ack":6,"method":"deliver","params":["notify",[["rp-6",false,{"body":"#\"$0.Alleged: greeter\"","slots":["ro+1"]}]]]}`,
			want: &Notify{Resolutions: []Resolution{{Promise: *ref("rp-6"), Data: smallcaps.CapData{Body: `#"$0.Alleged: greeter"`, Slots: []string{"ro+1"}}}}}},
		{name: "9.6 (JS→JS) a promise argument", frame: `{"seq":5,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"takePromise\",[\"&0\"]]","slots":["rp+4"]},"result":"rp+5"}]}`,
			want: &Send{Target: *ref("ro-1"), Methargs: smallcaps.CapData{Body: `#["takePromise",["&0"]]`, Slots: []string{"rp+4"}}, Result: ref("rp+5")}},
	}
}

// TestTranscript replays kernel-protocol.md §9 byte for byte.
func TestTranscript(t *testing.T) {
	st := newTables()
	for _, s := range transcript() {
		if s.before != nil {
			s.before(st)
		}
		m, err := wire.DecodeMessage([]byte(s.frame))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		env := m.Envelope
		if s.build != nil {
			msg := s.build(t)
			method, params, err := EncodeOutgoing(msg, st)
			if err != nil {
				t.Errorf("%s: EncodeOutgoing: %v", s.name, err)
				continue
			}
			out, err := wire.EncodeEnvelope(wire.Envelope{Seq: env.Seq, Ack: env.Ack, Method: method, Params: params})
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != s.frame {
				t.Errorf("%s:\n Go wrote %s\ncaptured %s", s.name, out, s.frame)
			}
			continue
		}
		got, err := Decode(env.Method, env.Params)
		if err != nil {
			t.Errorf("%s: Decode: %v", s.name, err)
			continue
		}
		if !reflect.DeepEqual(got, s.want) {
			t.Errorf("%s: Decode = %#v, want %#v", s.name, got, s.want)
		}
		method, params, err := Encode(got)
		if err != nil || method != env.Method || string(params) != string(env.Params) {
			t.Errorf("%s: re-encoded %s %s (%v), captured %s %s", s.name, method, params, err, env.Method, env.Params)
		}
	}
}

type rawFrame struct{ method, params string }

// wireDecode returns a captured frame's method and params.
func wireDecode(frame string) (rawFrame, error) {
	m, err := wire.DecodeMessage([]byte(frame))
	if err != nil {
		return rawFrame{}, err
	}
	return rawFrame{m.Envelope.Method, string(m.Envelope.Params)}, nil
}
