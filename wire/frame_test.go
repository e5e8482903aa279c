package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// Varint examples of reference §2.2.
func TestVarintPrefixGolden(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{0, "00"}, {127, "7f"}, {128, "8001"}, {300, "ac02"}, {16384, "808001"},
		{1048576, "808040"}, {2097151, "ffff7f"},
	}
	for _, tt := range tests {
		payload := bytes.Repeat([]byte{'x'}, tt.n)
		frame := AppendFrame(nil, payload)
		prefix := hex.EncodeToString(frame[:len(frame)-tt.n])
		if prefix != tt.want {
			t.Errorf("prefix(%d) = %s, want %s", tt.n, prefix, tt.want)
		}
		if tt.n > 2097151 {
			continue
		}
		r := NewReader(bytes.NewReader(frame), 2097151)
		got, err := r.ReadFrame()
		if err != nil || len(got) != tt.n {
			t.Errorf("ReadFrame of %d-byte frame: len %d, err %v", tt.n, len(got), err)
		}
	}
}

func TestPrefixLimit(t *testing.T) {
	for _, tt := range []struct{ max, want int }{
		{DefaultMaxMessageSize, 3}, {0, 3}, {-1, 3}, {127, 1}, {128, 2}, {16383, 2}, {16384, 3}, {2097151, 3}, {2097152, 4},
	} {
		if got := PrefixLimit(tt.max); got != tt.want {
			t.Errorf("PrefixLimit(%d) = %d, want %d", tt.max, got, tt.want)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string // hex
		max   int
		want  error
	}{
		{"oversize length", "818040", DefaultMaxMessageSize, ErrFrameTooLarge}, // 1048577
		{"largest 3-byte length over 1 MiB", "ffff7f", DefaultMaxMessageSize, ErrFrameTooLarge},
		{"prefix too long", "80808001", DefaultMaxMessageSize, ErrPrefixTooLong},
		{"prefix too long for small max", "8001", 100, ErrPrefixTooLong},
		{"eof inside prefix", "80", DefaultMaxMessageSize, ErrTruncated},
		{"eof inside payload", "05616263", DefaultMaxMessageSize, ErrTruncated},
		{"clean eof", "", DefaultMaxMessageSize, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := hex.DecodeString(tt.input)
			_, err := NewReader(bytes.NewReader(in), tt.max).ReadFrame()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var fe *FrameError
			if tt.want != io.EOF && (!errors.As(err, &fe) || fe.Error() == "") {
				t.Fatalf("err %v is not a *FrameError", err)
			}
		})
	}
	var fe *FrameError
	_, err := NewReader(bytes.NewReader([]byte{0x05, 'a', 'b'}), 0).ReadFrame()
	if !errors.As(err, &fe) || fe.Length != 5 || fe.Read != 2 || !strings.Contains(err.Error(), "2 of 5") {
		t.Errorf("truncated payload error lacks details: %v", err)
	}
	_, err = NewReader(bytes.NewReader([]byte{0x81, 0x80, 0x40}), 0).ReadFrame()
	if !errors.As(err, &fe) || fe.Length != 1048577 || fe.Max != DefaultMaxMessageSize {
		t.Errorf("oversize error lacks details: %v", err)
	}
}

func TestReaderSplitReadsAndBackToBack(t *testing.T) {
	var stream []byte
	payloads := [][]byte{[]byte("{}"), bytes.Repeat([]byte("a"), 20000), {}, bytes.Repeat([]byte("b"), 8192), bytes.Repeat([]byte("c"), 8192)}
	for _, p := range payloads {
		stream = AppendFrame(stream, p)
	}
	for name, r := range map[string]io.Reader{
		"one byte at a time": iotest.OneByteReader(bytes.NewReader(stream)),
		"half reads":         iotest.HalfReader(bytes.NewReader(stream)),
		"data with EOF":      iotest.DataErrReader(bytes.NewReader(stream)),
	} {
		fr := NewReader(r, 0)
		for i, want := range payloads {
			got, err := fr.ReadFrame()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: frame %d: len %d err %v, want len %d", name, i, len(got), err, len(want))
			}
		}
		if _, err := fr.ReadFrame(); err != io.EOF {
			t.Fatalf("%s: after the last frame err = %v, want io.EOF", name, err)
		}
	}
}

func TestReaderReturnsFreshSlices(t *testing.T) {
	stream := AppendFrame(AppendFrame(nil, []byte("first")), []byte("other"))
	r := NewReader(bytes.NewReader(stream), 0)
	a, _ := r.ReadFrame()
	b, _ := r.ReadFrame()
	if string(a) != "first" || string(b) != "other" {
		t.Fatalf("frames changed under the caller: %q %q", a, b)
	}
}

func TestReaderPassesOtherErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := NewReader(iotest.ErrReader(boom), 0).ReadFrame()
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
}

type countingWriter struct {
	writes int
	buf    bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

func TestWriteFrameSingleWrite(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 70000} {
		w := &countingWriter{}
		payload := bytes.Repeat([]byte{'z'}, n)
		if err := WriteFrame(w, payload); err != nil {
			t.Fatal(err)
		}
		if w.writes != 1 {
			t.Errorf("WriteFrame(%d bytes) made %d writes, want 1", n, w.writes)
		}
		if !bytes.Equal(w.buf.Bytes(), AppendFrame(nil, payload)) {
			t.Errorf("WriteFrame(%d bytes) wrote different bytes than AppendFrame", n)
		}
	}
}
