package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

var encodingCases = []OutRecord{
	{},
	{Method: "deliver", Params: json.RawMessage(`["a",1]`), Tag: json.RawMessage(`"t1"`), Parked: true, At: time.Date(2026, 12, 2, 1, 2, 3, 456789, time.UTC)},
	{Method: "m", Params: json.RawMessage(`{}`)},
	{Method: "old", At: time.Date(1200, 1, 1, 0, 0, 0, 0, time.UTC)}, // outside Unix nanoseconds: JSON
}

// Messages round-trip through both layouts, and JSON ones (schema ≤ 2) are
// still read.
func TestOutEncodingRoundTrip(t *testing.T) {
	for _, r := range encodingCases {
		data, err := encodeOut(r)
		if err != nil {
			t.Fatal(err)
		}
		if wantJSON := !r.At.IsZero() && r.At.Year() < 1678; (data[0] == '{') != wantJSON {
			t.Errorf("%+v encoded as %q", r, data)
		}
		jsonData, _ := json.Marshal(r)
		for _, d := range [][]byte{data, jsonData} {
			got, err := decodeOut(d)
			if err != nil {
				t.Fatalf("decode %q: %v", d, err)
			}
			if !got.At.Equal(r.At) {
				t.Errorf("At %v, want %v", got.At, r.At)
			}
			want := r
			got.At, want.At = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded %+v, want %+v (from %q)", got, r, d)
			}
		}
	}
}

// A damaged message never panics: it decodes to an error, or to a message
// that encodes back to the same bytes.
func FuzzDecodeOut(f *testing.F) {
	for _, r := range encodingCases {
		data, _ := encodeOut(r)
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add([]byte{outBinary})
	f.Add([]byte{outBinary, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeOut(data)
		if err != nil || len(data) == 0 || data[0] != outBinary {
			return
		}
		again, err := encodeOut(r)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("%q decoded to %+v, which encodes to %q (%v)", data, r, again, err)
		}
	})
}
