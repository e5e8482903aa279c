package wire

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the frame reader: it must never panic,
// never return a payload over the limit, and the frames it returns must
// re-encode to exactly the bytes it consumed (when prefixes were minimal).
func FuzzReader(f *testing.F) {
	f.Add([]byte{0x00}, uint16(16))
	f.Add(AppendFrame(nil, []byte(`{"ack":7}`)), uint16(0))
	f.Add([]byte{0x80, 0x80, 0x40}, uint16(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f}, uint16(0))
	f.Add([]byte{0x05, 'a', 'b'}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		limit := int(max) // 0 means the default
		r := NewReader(bytes.NewReader(data), limit)
		var consumed []byte
		for range 1000 {
			p, err := r.ReadFrame()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrPrefixTooLong) && !errors.Is(err, ErrTruncated) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				if err == io.EOF && !bytes.Equal(consumed, data) && canonical(data) {
					t.Fatalf("clean EOF but frames re-encode to %x, input %x", consumed, data)
				}
				return
			}
			if want := cmp.Or(limit, DefaultMaxMessageSize); len(p) > want {
				t.Fatalf("payload of %d bytes over the limit %d", len(p), want)
			}
			consumed = AppendFrame(consumed, p)
		}
	})
}

// canonical reports whether every length prefix in data that the reader
// could have consumed is minimally encoded (no trailing 0x80 0x00 padding),
// in which case re-encoding must reproduce the input exactly.
func canonical(data []byte) bool {
	for len(data) > 0 {
		var n uint64
		i := 0
		for ; i < len(data); i++ {
			n |= uint64(data[i]&0x7f) << (7 * i)
			if data[i] < 0x80 {
				break
			}
		}
		if i > 0 && data[i] == 0 {
			return false
		}
		data = data[i+1:]
		if uint64(len(data)) < n {
			return false
		}
		data = data[n:]
	}
	return true
}

// FuzzDecode feeds arbitrary payloads to the message and handshake decoders:
// they must never panic, and anything accepted must re-encode and decode to
// the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"ack":7}`,
		`{"seq":3,"ack":2,"method":"deliver","params":["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\"]]","slots":[]},"result":"rp+4"}]}`,
		`{"method":"handshake","params":{"incarnationId":"3f0c2f9e-6a39-4a8e-9b1e-0d5c3c2b1a00"}}`,
		`{"method":"handshakeAck","params":{"incarnationId":"x","features":["close"]}}`,
		`{"seq":1,"seq":2,"method":"m"}`,
		`{"seq":1e2,"method":"m"}`,
		`{"a\"b":1,"seq":1,"method":"\u00e9"}`,
		`[{"seq":1}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if m, err := DecodeMessage(payload); err == nil {
			var again Message
			if m.IsAck {
				again, err = DecodeMessage(EncodeAck(m.Envelope.Ack))
			} else {
				var enc []byte
				enc, err = EncodeEnvelope(m.Envelope)
				if err != nil {
					t.Fatalf("accepted %q but cannot re-encode: %v", payload, err)
				}
				again, err = DecodeMessage(enc)
			}
			if err != nil || again.IsAck != m.IsAck || again.Envelope.Seq != m.Envelope.Seq ||
				again.Envelope.Ack != m.Envelope.Ack || again.Envelope.Method != m.Envelope.Method ||
				!bytes.Equal(again.Envelope.Params, m.Envelope.Params) {
				t.Fatalf("round trip of %q changed it: %+v vs %+v (%v)", payload, m, again, err)
			}
			if !json.Valid(payload) {
				t.Fatalf("accepted invalid JSON %q", payload)
			}
		} else if !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
		}
		if h, err := DecodeHandshake(payload); err == nil {
			again, err := DecodeHandshake(EncodeHandshake(h))
			if err != nil || again.Ack != h.Ack || again.IncarnationID != h.IncarnationID || len(again.Features) != len(h.Features) {
				t.Fatalf("handshake round trip of %q: %+v vs %+v (%v)", payload, h, again, err)
			}
		} else if !errors.Is(err, ErrInvalidHandshake) {
			t.Fatalf("error %v does not wrap ErrInvalidHandshake", err)
		}
	})
}
