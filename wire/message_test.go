package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Exact bytes of reference §2.9.
func TestGoldenFrames(t *testing.T) {
	hs := EncodeHandshake(Handshake{IncarnationID: "3f0c2f9e-6a39-4a8e-9b1e-0d5c3c2b1a00"})
	wantHS := `{"method":"handshake","params":{"incarnationId":"3f0c2f9e-6a39-4a8e-9b1e-0d5c3c2b1a00"}}`
	if string(hs) != wantHS {
		t.Errorf("handshake = %s, want %s", hs, wantHS)
	}
	frame := AppendFrame(nil, hs)
	if len(hs) != 88 || frame[0] != 0x58 {
		t.Errorf("handshake payload %d bytes, prefix %x; want 88 bytes, prefix 58", len(hs), frame[0])
	}
	if got := hex.EncodeToString(frame[:16]); got != "587b226d6574686f64223a2268616e64" {
		t.Errorf("handshake frame starts %s", got)
	}

	ack := AppendFrame(nil, EncodeAck(7))
	if got := hex.EncodeToString(ack); got != "097b2261636b223a377d" {
		t.Errorf("ack frame = %s, want 097b2261636b223a377d", got)
	}

	params := `["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\"]]","slots":[]},"result":"rp+4"}]`
	env, err := EncodeEnvelope(Envelope{Seq: 3, Ack: 2, Method: "deliver", Params: json.RawMessage(params)})
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := `{"seq":3,"ack":2,"method":"deliver","params":` + params + `}`
	if string(env) != wantEnv || len(env) != 140 {
		t.Errorf("delivery = %s (%d bytes), want %s (140 bytes)", env, len(env), wantEnv)
	}
	if f := AppendFrame(nil, env); f[0] != 0x8c || f[1] != 0x01 {
		t.Errorf("delivery prefix = %x, want 8c01", f[:2])
	}

	for _, tt := range []struct {
		env  Envelope
		want string
	}{
		{Envelope{Seq: 1, Method: "redeemURL", Params: json.RawMessage(`["ocap:zabc@12D3KooWx,/ip4/1.2.3.4/p2p/12D3KooWy","1"]`)},
			`{"seq":1,"method":"redeemURL","params":["ocap:zabc@12D3KooWx,/ip4/1.2.3.4/p2p/12D3KooWy","1"]}`},
		{Envelope{Seq: 1, Ack: 1, Method: "redeemURLReply", Params: json.RawMessage(`[true,"1","ro+1"]`)},
			`{"seq":1,"ack":1,"method":"redeemURLReply","params":[true,"1","ro+1"]}`},
		{Envelope{Seq: 1, Ack: 1, Method: "redeemURLReply", Params: json.RawMessage(`[false,"1","ocapURL has bad object reference"]`)},
			`{"seq":1,"ack":1,"method":"redeemURLReply","params":[false,"1","ocapURL has bad object reference"]}`},
	} {
		got, err := EncodeEnvelope(tt.env)
		if err != nil || string(got) != tt.want {
			t.Errorf("EncodeEnvelope = %s (%v), want %s", got, err, tt.want)
		}
		m, err := DecodeMessage(got)
		if err != nil || m.IsAck || m.Envelope.Seq != tt.env.Seq || m.Envelope.Ack != tt.env.Ack ||
			m.Envelope.Method != tt.env.Method || !bytes.Equal(m.Envelope.Params, tt.env.Params) {
			t.Errorf("DecodeMessage(%s) = %+v, %v", got, m, err)
		}
	}
}

func TestHandshakeRoundTripAndFeatures(t *testing.T) {
	for _, h := range []Handshake{
		{IncarnationID: "a"},
		{Ack: true, IncarnationID: "b", Features: []string{"close"}},
		{IncarnationID: "quote\" backslash\\ nl\n <html> \u2028 é"},
	} {
		got, err := DecodeHandshake(EncodeHandshake(h))
		if err != nil || got.Ack != h.Ack || got.IncarnationID != h.IncarnationID || strings.Join(got.Features, ",") != strings.Join(h.Features, ",") {
			t.Errorf("round trip of %+v = %+v, %v", h, got, err)
		}
	}
	ack := EncodeHandshake(Handshake{Ack: true, IncarnationID: "x", Features: []string{"close"}})
	if string(ack) != `{"method":"handshakeAck","params":{"incarnationId":"x","features":["close"]}}` {
		t.Errorf("handshakeAck with features = %s", ack)
	}
	// JSON.stringify does not escape <, > or & (Go's json.Marshal would).
	if got := EncodeHandshake(Handshake{IncarnationID: "<&>"}); !bytes.Contains(got, []byte(`"<&>"`)) {
		t.Errorf("HTML characters escaped: %s", got)
	}
}

func TestDecodeHandshakeRules(t *testing.T) {
	valid := []string{
		`{"method":"handshake","params":{"incarnationId":"x"}}`,
		`{"params":{"incarnationId":""},"method":"handshakeAck","extra":1}`,
		`{"method":"handshake","params":{"incarnationId":"x","features":"not-a-list"}}`, // malformed extension ignored
		`{"method":"handshake","params":{"incarnationId":"x","features":[1,2]}}`,
	}
	for _, in := range valid {
		if _, err := DecodeHandshake([]byte(in)); err != nil {
			t.Errorf("DecodeHandshake(%s): %v", in, err)
		}
	}
	invalid := []string{
		``, `null`, `[]`, `"handshake"`, `{}`,
		`{"method":"deliver","params":{"incarnationId":"x"}}`,
		`{"method":"handshake"}`,
		`{"method":"handshake","params":null}`,
		`{"method":"handshake","params":{}}`,
		`{"method":"handshake","params":{"incarnationId":5}}`,
		`{"method":5,"params":{"incarnationId":"x"}}`,
		`{"method":"handshake","params":{"incarnationId":"x"}} trailing`,
		`{"seq":1,"method":"deliver","params":[]}`,
	}
	for _, in := range invalid {
		if _, err := DecodeHandshake([]byte(in)); !errors.Is(err, ErrInvalidHandshake) {
			t.Errorf("DecodeHandshake(%q) err = %v, want ErrInvalidHandshake", in, err)
		}
	}
}

func TestDecodeMessageTable(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		isAck   bool
		seq     uint64
		ack     uint64
		method  string
		params  string
	}{
		{in: `{"ack":7}`, isAck: true, ack: 7},
		{in: `{"ack":0}`, isAck: true},
		{in: `{"ack":3,"method":"x"}`, isAck: true, ack: 3},
		{in: `{"seq":1,"method":"m","params":null}`, seq: 1, method: "m", params: "null"},
		{in: `{"seq":1,"method":"m"}`, seq: 1, method: "m"},
		{in: ` {"method":"m","params":{"a":[1,2]},"seq":9007199254740991,"ack":4} `, seq: 9007199254740991, ack: 4, method: "m", params: `{"a":[1,2]}`},
		{in: `{"seq":2,"method":"m","params":"x","unknown":true}`, seq: 2, method: "m", params: `"x"`},
		{in: `{"seq":0,"method":"m"}`, wantErr: true},
		{in: `{"seq":-1,"method":"m"}`, wantErr: true},
		{in: `{"seq":1.0,"method":"m"}`, wantErr: true},
		{in: `{"seq":1e2,"method":"m"}`, wantErr: true},
		{in: `{"seq":"1","method":"m"}`, wantErr: true},
		{in: `{"seq":01,"method":"m"}`, wantErr: true},
		{in: `{"seq":9007199254740992,"method":"m"}`, wantErr: true},
		{in: `{"seq":99999999999999999999,"method":"m"}`, wantErr: true},
		{in: `{"seq":1}`, wantErr: true},
		{in: `{"seq":1,"method":null}`, wantErr: true},
		{in: `{"seq":1,"method":["m"]}`, wantErr: true},
		{in: `{"seq":1,"ack":-1,"method":"m"}`, wantErr: true},
		{in: `{"ack":"1"}`, wantErr: true},
		{in: `{"ack":1.5}`, wantErr: true},
		{in: `{"seq":1,"seq":2,"method":"m"}`, wantErr: true},
		{in: `{"method":"m","params":[]}`, wantErr: true},
		{in: `{}`, wantErr: true},
		{in: `[]`, wantErr: true},
		{in: `null`, wantErr: true},
		{in: ``, wantErr: true},
		{in: `{"seq":1,"method":"m"}{}`, wantErr: true},
		{in: `{"seq":1,"method":"m"`, wantErr: true},
		{in: `{"seq":1 "method":"m"}`, wantErr: true},
		{in: `{"method":"handshake","params":{"incarnationId":"x"}}`, wantErr: true},
	}
	for _, tt := range tests {
		m, err := DecodeMessage([]byte(tt.in))
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("DecodeMessage(%q) err = %v, want ErrInvalidMessage", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("DecodeMessage(%q): %v", tt.in, err)
			continue
		}
		if m.IsAck != tt.isAck || m.Envelope.Seq != tt.seq || m.Envelope.Ack != tt.ack || m.Envelope.Method != tt.method || string(m.Envelope.Params) != tt.params {
			t.Errorf("DecodeMessage(%q) = %+v", tt.in, m)
		}
	}
}

func TestEncodeEnvelopeRejects(t *testing.T) {
	for _, e := range []Envelope{
		{Seq: 0, Method: "m"},
		{Seq: MaxSafeInteger + 1, Method: "m"},
		{Seq: 1, Ack: MaxSafeInteger + 1, Method: "m"},
	} {
		if _, err := EncodeEnvelope(e); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("EncodeEnvelope(%+v) err = %v, want ErrInvalidMessage", e, err)
		}
	}
}

func TestValidateParams(t *testing.T) {
	for _, bad := range []string{`{bad`, ``, `[1,]`, `1 2`} {
		if err := ValidateParams(json.RawMessage(bad)); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("ValidateParams(%q) = %v, want ErrInvalidMessage", bad, err)
		}
	}
	for _, ok := range []string{`[]`, `{"a":1}`, `"s"`, `null`, ` [1] `} {
		if err := ValidateParams(json.RawMessage(ok)); err != nil {
			t.Errorf("ValidateParams(%q) = %v", ok, err)
		}
	}
	if err := ValidateParams(nil); err != nil {
		t.Errorf("ValidateParams(nil) = %v", err)
	}
}

func TestMethodCarriedVerbatim(t *testing.T) {
	for _, method := range []string{"deliver", "", "ünïcödé", "with \"quotes\" and \\", "ctl\x01\x1f", "<script>", "\u2028\u2029"} {
		b, err := EncodeEnvelope(Envelope{Seq: 5, Method: method, Params: json.RawMessage(`[]`)})
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeMessage(b)
		if err != nil || m.Envelope.Method != method {
			t.Errorf("method %q came back as %q (%v) via %s", method, m.Envelope.Method, err, b)
		}
		var std struct{ Method string }
		if err := json.Unmarshal(b, &std); err != nil || std.Method != method {
			t.Errorf("encoding/json reads method %q as %q (%v)", method, std.Method, err)
		}
	}
}

func BenchmarkEncodeEnvelope(b *testing.B) {
	e := Envelope{Seq: 12345, Ack: 678, Method: "deliver", Params: json.RawMessage(`["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\"]]","slots":[]},"result":"rp+4"}]`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeEnvelope(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	payload := []byte(`{"seq":12345,"ack":678,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\"]]","slots":[]},"result":"rp+4"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEnvelopeSize(t *testing.T) {
	for _, e := range []Envelope{
		{Seq: 1, Method: "deliver", Params: json.RawMessage(`["message","ro-1",{}]`)},
		{Seq: 9, Ack: 10, Method: "", Params: nil},
		{Seq: MaxSafeInteger, Ack: MaxSafeInteger, Method: "with \"quotes\" and \x01 é", Params: json.RawMessage(`{"a":[1,2,3]}`)},
		{Seq: 12345, Ack: 99, Method: "m\u2028", Params: json.RawMessage(`null`)},
	} {
		b, err := EncodeEnvelope(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := EnvelopeSize(e); got != len(b) {
			t.Errorf("EnvelopeSize(%+v) = %d, encoded %d bytes: %s", e, got, len(b), b)
		}
	}
}
