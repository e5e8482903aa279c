package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestParseRequest(t *testing.T) {
	to := "12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc"
	for _, c := range []struct {
		line, field, want string
	}{
		{`{"op":"send","to":"` + to + `","method":"m","parms":[1]}`, "parms", `unknown field for op "send"`},
		{`{"op":"send","to":"` + to + `","method":"m","hint":["/ip4/1.2.3.4/tcp/1"]}`, "hint", "unknown field"},
		{`{"op":"peers","peer":"` + to + `"}`, "peer", "only op and id"},
		{`{"op":"send","to":"` + to + `","method":5}`, "method", "want a string, got a number"},
		{`{"op":"send","to":["x"],"method":"m"}`, "to", "want a string, got an array"},
		{`{"op":"send","to":"` + to + `","method":"m","hints":"/ip4/1.2.3.4/tcp/1"}`, "hints", "want an array"},
		{`{"op":"send","to":"` + to + `","method":"m","hints":[1]}`, "hints", "item 0: want a string"},
		{`{"op":"send","to":"` + to + `","method":"m","hints":["garbage"]}`, "hints", ""},
		{`{"op":"send","to":"nope","method":"m"}`, "to", "invalid peer ID"},
		{`{"op":"send","to":"` + to + `"}`, "method", "is required"},
		{`{"op":"close"}`, "peer", "is required"},
		{`{"op":true}`, "op", "want a string"},
		{`{"op":"fly"}`, "op", "unknown op"},
		{`{"id":1}`, "op", "is required"},
		{`{"op":"peers","op":"wake"}`, "op", "appears twice"},
		{`{"op":"peers"}{"op":"wake"}`, "", "a second JSON object"},
		{`{"op":"peers"}  {"op":"wake"}`, "", "(at byte 16)"},
		{`{"op":"peers"} x`, "", "trailing data"},
		{`{"op":"peers"`, "", "malformed JSON"},
		{`{"op":"peers",}`, "", "malformed JSON"},
		{`[{"op":"peers"}]`, "", "want an object, got an array"},
		{`"peers"`, "", "want an object"},
	} {
		_, err := parseRequest([]byte(c.line), "")
		var re *RequestError
		if !errors.As(err, &re) || !errors.Is(err, ErrBadRequest) || re.Field != c.field || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (field %q); want field %q and %q", c.line, err, fieldOf(err), c.field, c.want)
		}
	}
	r, err := parseRequest([]byte(` {"op":"send","id":{"k":[1]},"to":"`+to+`","method":"m","params":{"a":null},"hints":[]} `), "")
	if err != nil || string(r.ID) != `{"k":[1]}` || string(r.Params) != `{"a":null}` || r.To.String() != to {
		t.Fatalf("good request: %+v %v", r, err)
	}
	if _, err := parseRequest([]byte(`{"op":"close","to":"x"}`), "send"); fieldOf(err) != "op" {
		t.Fatalf("op of another endpoint: %v", err)
	}
	if _, err := parseRequest([]byte(`{"to":"`+to+`","method":"m"}`), "send"); err != nil {
		t.Fatalf("API send without op: %v", err)
	}
	if _, err := parseBatch([]byte(`[{"to":"`+to+`","method":"m"},{"to":"`+to+`","method":"m","x":1}]`), "send"); !strings.Contains(fmt.Sprint(err), "item 1") {
		t.Fatalf("batch: %v", err)
	}
	if _, err := parseNDJSON([]byte("{\"to\":\""+to+"\",\"method\":\"m\"}\n\n{\"to\":1}\n"), "send"); !strings.Contains(fmt.Sprint(err), "line 3") {
		t.Fatalf("ndjson: %v", err)
	}
}

func fieldOf(err error) string {
	var re *RequestError
	if errors.As(err, &re) {
		return re.Field
	}
	return ""
}

// On stdio and HTTP alike, a request with an error is answered with what
// was wrong and nothing of it is sent.
func TestStrictInputSendsNothing(t *testing.T) {
	o := testOptions(t)
	o.API = "127.0.0.1:0"
	s, _ := startStdio(t, o)
	tok, _ := LoadToken(o.Node.Dir)
	to := randomPeer(t)
	bad := []struct{ line, field string }{
		{`{"op":"send","id":"a","to":"` + to + `","method":"m","parms":[1]}`, "parms"},
		{`{"op":"send","id":"b","to":"` + to + `","method":"m","hint":["/ip4/127.0.0.1/tcp/1"]}`, "hint"},
		{`{"op":"send","id":"c","to":"` + to + `","method":7}`, "method"},
		{`{"op":"send","id":"d","to":"` + to + `","method":"m"} {"op":"send","to":"` + to + `","method":"m"}`, ""},
		{`{"op":"send","id":"e","to":"` + to + `","method":"m"}garbage`, ""},
		{`{"op":"send","id":"f","to":"` + to + `","method":"m","params":"` + strings.Repeat("x", 1<<20) + `"}`, "params"},
	}
	for i, b := range bad {
		s.send(b.line)
		e := s.next("", 10*time.Second)
		if e["event"] != "error" || e["line"] != float64(i+1) || fmt.Sprint(e["field"]) != fmt.Sprint(orNil(b.field)) {
			t.Errorf("line %d: %v", i+1, e)
		}
	}
	base := "http://" + s.APIAddr()
	for _, body := range []string{
		`{"to":"` + to + `","method":"m","parms":[1]}`,
		`{"to":"` + to + `","method":"m"}{"to":"` + to + `","method":"m"}`,
		`[{"to":"` + to + `","method":"m"},{"to":"` + to + `","method":"m","hint":[]}]`,
		`[{"to":"` + to + `","method":"m"},{"to":"` + to + `","method":"m","params":"` + strings.Repeat("x", 1<<20) + `"}]`,
	} {
		code, resp, _ := call(t, "POST", base+"/v1/send", body, "Authorization: Bearer "+tok, "Content-Type: application/json")
		if code != 400 || !strings.Contains(resp, "bad request") {
			t.Errorf("%.80s: %d %s", body, code, resp)
		}
	}
	code, resp, _ := call(t, "POST", base+"/v1/send", "{\"to\":\""+to+"\",\"method\":\"m\"}\n{\"to\":\""+to+"\",\"method\":\"m\",\"parms\":1}\n",
		"Authorization: Bearer "+tok, "Content-Type: application/x-ndjson")
	if code != 400 || !strings.Contains(resp, `"item":1`) {
		t.Errorf("ndjson with a bad line: %d %s", code, resp)
	}
	for _, c := range []struct{ path, body string }{
		{"/v1/peers/" + to + "/close", `{"hints":[]}`},
		{"/v1/peers/" + to + "/reconnect", `{"hints":[],"x":1}`},
		{"/v1/events/ack", `{"upTo":"1"}`},
		{"/v1/events/ack", `{"upto":1}`},
		{"/v1/events/ack", `{"upTo":1} {}`},
		{"/v1/send?bogus=1", `{"to":"` + to + `","method":"m"}`},
	} {
		code, resp, _ := call(t, "POST", base+c.path, c.body, "Authorization: Bearer "+tok, "Content-Type: application/json")
		if code != 400 {
			t.Errorf("%s %s: %d %s", c.path, c.body, code, resp)
		}
	}
	if n := sentTo(s.Daemon, to); n != 0 {
		t.Fatalf("bad requests sent %d messages", n)
	}
	// The same requests without the mistakes go through.
	s.send(`{"op":"send","id":"ok","to":"` + to + `","method":"m","params":[1]}`)
	if m := s.next("sent", 10*time.Second); m["id"] != "ok" || m["seq"] != 1.0 {
		t.Fatalf("good send: %v", m)
	}
}

func orNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// The fast object scanner agrees with the decoder on valid objects.
func TestScanObjectMatchesDecoder(t *testing.T) {
	for _, in := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a" : "x\"}{" , "b":[1,{"c":"]"}],"d":{"e":null}}`, `{"op":"send","params":"é ✓ \u00e9"}`,
		`{"n":-1.5e3,"t":true,"f":false,"z":null}`, "{\n\"a\":\t[ ]\r\n}", `{"a\u0062":1}`, `{"a":1,"a":2}`, `{"a":1} {}`,
	} {
		fast, ok := scanObject([]byte(in))
		slow, err := decodeObject([]byte(in))
		if !ok {
			if err == nil && !strings.Contains(in, `\u0062`) {
				t.Errorf("%q: the scanner gave up on a good object", in)
			}
			continue
		}
		if err != nil || len(fast) != len(slow) {
			t.Fatalf("%q: scanner %v, decoder %v %v", in, fast, slow, err)
		}
		for i := range fast {
			if fast[i].key != slow[i].key || strings.TrimSpace(string(fast[i].val)) != strings.TrimSpace(string(slow[i].val)) {
				t.Errorf("%q: member %d: %q=%s vs %q=%s", in, i, fast[i].key, fast[i].val, slow[i].key, slow[i].val)
			}
		}
	}
}

// The hand-written per-message events are the JSON of their structs, on one
// line.
func TestEventEncoding(t *testing.T) {
	p, _ := peer.Decode("12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc")
	same := func(got []byte, want any) {
		t.Helper()
		var a, b any
		wb, _ := json.Marshal(want)
		if err := json.Unmarshal(got, &a); err != nil || bytes.Contains(got, []byte("\n")) {
			t.Fatalf("%s: %v", got, err)
		}
		json.Unmarshal(wb, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s\nwant %s", got, wb)
		}
	}
	for _, id := range []json.RawMessage{nil, json.RawMessage(`"x"`), json.RawMessage("{\n  \"k\": [1, 2]\n}")} {
		same(seqEvent("sent", id, p, 7), sentAnswer{"sent", id, p.String(), 7})
		same(seqEvent("acked", id, p, 9), ackedEvent{"acked", id, p.String(), 9})
	}
	for _, method := range []string{"deliver", `a "quoted" <b> & é`, "tab\there"} {
		for _, params := range []json.RawMessage{nil, json.RawMessage("[\n1,\n\"two\"\n]")} {
			same(messageLine(p, 3, method, params, true), messageEvent{"message", p.String(), 3, method, params, true})
		}
	}
}
