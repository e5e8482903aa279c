package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ocapnet/ocapnet/internal/jsjson"
)

// Handshake method names (reference §2.3).
const (
	MethodHandshake    = "handshake"
	MethodHandshakeAck = "handshakeAck"
)

// MaxSafeInteger is the largest sequence or ack number: JavaScript's
// Number.MAX_SAFE_INTEGER (2^53-1), beyond which a JavaScript peer could not
// represent the number exactly.
const MaxSafeInteger = 1<<53 - 1

var (
	// ErrInvalidHandshake: a frame that should be a handshake or
	// handshakeAck is not one.
	ErrInvalidHandshake = errors.New("invalid handshake")
	// ErrInvalidMessage: an application frame is not a valid sequenced
	// envelope or standalone ack.
	ErrInvalidMessage = errors.New("invalid message")
)

// Handshake is the first frame in each direction of every new stream:
// {"method":"handshake","params":{"incarnationId":"…"}} from the dialler and
// {"method":"handshakeAck",…} from the responder.
type Handshake struct {
	// Ack is false for "handshake" and true for "handshakeAck".
	Ack bool
	// IncarnationID is the sender's incarnation ID.
	IncarnationID string
	// Features are optional capabilities the sender announces in
	// params.features, an ocapnet extension that upstream ignores (it
	// ignores unknown fields). Omitted from the JSON when empty, so a
	// handshake without features is byte-identical to upstream's.
	Features []string
}

// EncodeHandshake returns the JSON payload of h, keys in upstream's order.
func EncodeHandshake(h Handshake) []byte {
	method := MethodHandshake
	if h.Ack {
		method = MethodHandshakeAck
	}
	b := make([]byte, 0, 64+len(h.IncarnationID))
	b = append(b, `{"method":`...)
	b = appendString(b, method)
	b = append(b, `,"params":{"incarnationId":`...)
	b = appendString(b, h.IncarnationID)
	if len(h.Features) > 0 {
		b = append(b, `,"features":[`...)
		for i, f := range h.Features {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f)
		}
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

// DecodeHandshake parses a handshake or handshakeAck payload with upstream's
// validity rule (isHandshakeMessage): a JSON object whose method is
// "handshake" or "handshakeAck" and whose params.incarnationId is a string.
// Other fields are ignored, as upstream does. params.features is used only
// when it is a list of strings; any other value is ignored as an unknown
// extension, so that a peer's malformed extension never breaks the
// upstream-compatible core of the handshake.
func DecodeHandshake(payload []byte) (Handshake, error) {
	var h Handshake
	fields, err := decodeObject(payload)
	if err != nil {
		return h, fmt.Errorf("%w: %v", ErrInvalidHandshake, err)
	}
	var method string
	if raw, ok := fields["method"]; !ok || json.Unmarshal(raw, &method) != nil {
		return h, fmt.Errorf("%w: method missing or not a string", ErrInvalidHandshake)
	}
	switch method {
	case MethodHandshake:
	case MethodHandshakeAck:
		h.Ack = true
	default:
		return h, fmt.Errorf("%w: unexpected method %q", ErrInvalidHandshake, truncate(method))
	}
	rawParams, ok := fields["params"]
	if !ok {
		return h, fmt.Errorf("%w: params missing", ErrInvalidHandshake)
	}
	params, err := decodeObject(rawParams)
	if err != nil {
		return h, fmt.Errorf("%w: params: %v", ErrInvalidHandshake, err)
	}
	if raw, ok := params["incarnationId"]; !ok || json.Unmarshal(raw, &h.IncarnationID) != nil {
		return h, fmt.Errorf("%w: params.incarnationId missing or not a string", ErrInvalidHandshake)
	}
	if raw, ok := params["features"]; ok {
		var features []string
		if json.Unmarshal(raw, &features) == nil {
			h.Features = features
		}
	}
	return h, nil
}

// Envelope is a sequenced application message (reference §2.4):
// {"seq":N,"ack":M,"method":"…","params":…}.
type Envelope struct {
	// Seq is the message's sequence number, from 1.
	Seq uint64
	// Ack is the cumulative acknowledgement piggybacked on the message; 0
	// means none and the key is omitted.
	Ack uint64
	// Method is the application's method name, carried verbatim.
	Method string
	// Params is the application's payload, carried verbatim as raw JSON;
	// nil means the key is absent.
	Params json.RawMessage
}

// ValidateParams checks that params can be carried in an envelope: nil (no
// params key) or one valid JSON value. Callers check a message's params once,
// when they accept it; EncodeEnvelope then trusts them, so a message that is
// retransmitted is not validated again.
func ValidateParams(params json.RawMessage) error {
	if params != nil && !json.Valid(params) {
		return fmt.Errorf("%w: params is not valid JSON", ErrInvalidMessage)
	}
	return nil
}

// EncodeEnvelope returns the JSON payload of e with upstream's key order
// (seq, ack if non-zero, method, params). Params is written verbatim and must
// have passed ValidateParams. It fails if Seq or Ack is out of range.
func EncodeEnvelope(e Envelope) ([]byte, error) {
	if e.Seq == 0 || e.Seq > MaxSafeInteger {
		return nil, fmt.Errorf("%w: seq %d out of range 1..2^53-1", ErrInvalidMessage, e.Seq)
	}
	if e.Ack > MaxSafeInteger {
		return nil, fmt.Errorf("%w: ack %d out of range 0..2^53-1", ErrInvalidMessage, e.Ack)
	}
	b := make([]byte, 0, 48+len(e.Method)+len(e.Params))
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	if e.Ack > 0 {
		b = append(b, `,"ack":`...)
		b = strconv.AppendUint(b, e.Ack, 10)
	}
	b = append(b, `,"method":`...)
	b = appendString(b, e.Method)
	if e.Params != nil {
		b = append(b, `,"params":`...)
		b = append(b, e.Params...)
	}
	return append(b, '}'), nil
}

// EnvelopeSize returns the exact length of EncodeEnvelope(e)'s payload,
// without encoding it, so a sender can check a message against the frame
// limit with the sequence number and acknowledgement it will carry.
func EnvelopeSize(e Envelope) int {
	n := len(`{"seq":`) + digits(e.Seq) + len(`,"method":`) + len(appendString(nil, e.Method)) + len(`}`)
	if e.Ack > 0 {
		n += len(`,"ack":`) + digits(e.Ack)
	}
	if e.Params != nil {
		n += len(`,"params":`) + len(e.Params)
	}
	return n
}

func digits(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// EncodeAck returns the standalone acknowledgement {"ack":n}.
func EncodeAck(n uint64) []byte {
	b := append(make([]byte, 0, 24), `{"ack":`...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, '}')
}

// Message is one decoded application frame: a sequenced envelope, or a
// standalone acknowledgement.
type Message struct {
	// IsAck is true for a standalone acknowledgement; then only
	// Envelope.Ack is set.
	IsAck    bool
	Envelope Envelope
}

// DecodeMessage parses an application frame strictly. The payload must be a
// JSON object. As upstream does, an object with "ack" and no "seq" is a
// standalone acknowledgement (other keys are then ignored). Otherwise "seq"
// must be an integer from 1 to 2^53-1, "ack" (optional) an integer from 0 to
// 2^53-1, "method" a string, and "params" (optional) any JSON value, kept
// verbatim. Integers must be written as plain digits (JSON.stringify never
// writes 1.0 or 1e2 for them). Unknown keys are ignored, as upstream ignores
// them; a duplicated key is an error, because JavaScript's JSON.parse would
// silently keep the last value and the two implementations could disagree.
func DecodeMessage(payload []byte) (Message, error) {
	var m Message
	fields, err := decodeObject(payload)
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	rawSeq, hasSeq := fields["seq"]
	rawAck, hasAck := fields["ack"]
	if hasAck {
		ack, err := parseInteger(rawAck, 0)
		if err != nil {
			return m, fmt.Errorf("%w: ack: %v", ErrInvalidMessage, err)
		}
		m.Envelope.Ack = ack
		if !hasSeq {
			m.IsAck = true
			return m, nil
		}
	}
	if !hasSeq {
		return m, fmt.Errorf("%w: neither seq nor ack present", ErrInvalidMessage)
	}
	if m.Envelope.Seq, err = parseInteger(rawSeq, 1); err != nil {
		return m, fmt.Errorf("%w: seq: %v", ErrInvalidMessage, err)
	}
	rawMethod, ok := fields["method"]
	if !ok {
		return m, fmt.Errorf("%w: method missing", ErrInvalidMessage)
	}
	if rawMethod[0] != '"' || json.Unmarshal(rawMethod, &m.Envelope.Method) != nil {
		return m, fmt.Errorf("%w: method is not a string", ErrInvalidMessage)
	}
	if raw, ok := fields["params"]; ok {
		m.Envelope.Params = raw
	}
	return m, nil
}

// decodeObject splits a JSON object into its members' raw values. It rejects
// anything but a single valid JSON object and duplicate keys. The payload is
// validated first with json.Valid, so the scan below only has to find the
// boundaries of the top-level members in text known to be valid JSON.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(data) {
		return nil, errors.New("not valid JSON")
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	fields := make(map[string]json.RawMessage, 4)
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return fields, nil
	}
	for {
		end := skipValue(data, i) // the key, a string
		key, err := unquote(data[i:end])
		if err != nil {
			return nil, err
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", truncate(key))
		}
		i = skipSpace(data, end) // at ':'
		i = skipSpace(data, i+1)
		end = skipValue(data, i)
		fields[key] = json.RawMessage(data[i:end:end])
		i = skipSpace(data, end)
		if data[i] == '}' {
			return fields, nil
		}
		i = skipSpace(data, i+1) // past ','
	}
}

// unquote decodes a JSON string literal known to be valid.
func unquote(lit []byte) (string, error) {
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit[1 : len(lit)-1]), nil
	}
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return "", err
	}
	return s, nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at i, in
// text known to be valid JSON.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		for i++; ; i++ {
			switch data[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch data[i] {
			case '"':
				i = skipValue(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
	default: // number, true, false, null
		for i < len(data) && !strings.ContainsRune(",}] \t\n\r", rune(data[i])) {
			i++
		}
		return i
	}
}

// parseInteger accepts a JSON number written as plain decimal digits, with
// a value from min to MaxSafeInteger.
func parseInteger(raw json.RawMessage, min uint64) (uint64, error) {
	s := string(raw)
	if s == "" || len(s) > 16 {
		return 0, fmt.Errorf("%s is not an integer in range %d..2^53-1", truncate(s), min)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%s is not a non-negative integer", truncate(s))
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%s is not a valid JSON number", truncate(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < min || n > MaxSafeInteger {
		return 0, fmt.Errorf("%s is not an integer in range %d..2^53-1", truncate(s), min)
	}
	return n, nil
}

// appendString appends s as a JSON string the way JavaScript's
// JSON.stringify writes it (see jsjson.AppendString).
func appendString(b []byte, s string) []byte { return jsjson.AppendString(b, s) }

// truncate shortens text quoted in error messages.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
