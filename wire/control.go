package wire

import "fmt"

// ControlProtocolID is the libp2p protocol of ocapnet's control stream, an
// ocapnet extension used only with peers that announced FeatureClose in their
// handshake. It carries the intentional-close signal: the closer opens a
// stream, writes one Close frame and half-closes; the other side answers one
// CloseAck frame (docs/PROTOCOL.md). JavaScript peers never see it.
const ControlProtocolID = "/ocapnet/control/1.0.0"

// FeatureClose is the handshake feature of peers that understand the close
// signal on ControlProtocolID.
const FeatureClose = "close"

// MaxControlFrame is the largest control frame accepted.
const MaxControlFrame = 1024

// The control frames, byte for byte.
var (
	closeFrame    = []byte(`{"method":"close"}`)
	closeAckFrame = []byte(`{"method":"closeAck"}`)
)

// Control is a decoded control frame.
type Control int

// The control frames.
const (
	ControlClose Control = iota + 1
	ControlCloseAck
)

// EncodeControl returns the payload of a control frame.
func EncodeControl(c Control) []byte {
	switch c {
	case ControlClose:
		return append([]byte(nil), closeFrame...)
	case ControlCloseAck:
		return append([]byte(nil), closeAckFrame...)
	}
	panic(fmt.Sprintf("wire: unknown control frame %d", c))
}

// DecodeControl parses a control frame payload. Only the exact bytes of
// EncodeControl are accepted; anything else is ErrInvalidMessage.
func DecodeControl(payload []byte) (Control, error) {
	switch string(payload) {
	case string(closeFrame):
		return ControlClose, nil
	case string(closeAckFrame):
		return ControlCloseAck, nil
	}
	return 0, fmt.Errorf("%w: not a control frame: %q", ErrInvalidMessage, truncate(string(payload)))
}
