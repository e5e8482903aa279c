package wire

import (
	"errors"
	"testing"
)

func TestControlFrames(t *testing.T) {
	for c, want := range map[Control]string{ControlClose: `{"method":"close"}`, ControlCloseAck: `{"method":"closeAck"}`} {
		got := EncodeControl(c)
		if string(got) != want {
			t.Errorf("EncodeControl(%d) = %s, want %s", c, got, want)
		}
		back, err := DecodeControl(got)
		if err != nil || back != c {
			t.Errorf("DecodeControl(%s) = %d, %v", got, back, err)
		}
	}
	for _, bad := range []string{``, `{"method":"close" }`, `{"method":"closed"}`, `{"method":"handshake","params":{}}`} {
		if _, err := DecodeControl([]byte(bad)); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("DecodeControl(%q): %v, want ErrInvalidMessage", bad, err)
		}
	}
}
