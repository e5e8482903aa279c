package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/transport"
)

// request is one input line (stdio) or API call, checked: the op is known,
// every field belongs to it and has the right type.
type request struct {
	Op     string
	ID     json.RawMessage
	To     peer.ID // send
	Peer   peer.ID // peer ops
	Method string
	Params json.RawMessage
	Hints  []string
	// The kernel ops (kernel.go).
	Name, Iface, Call, URL, Ref, Error string
	Value, Args                        json.RawMessage
	Rejected                           bool
}

// opFields lists, for every op, the fields it takes besides "op" and "id".
var opFields = map[string][]string{
	"send":      {"to", "method", "params", "hints"},
	"close":     {"peer"},
	"reconnect": {"peer", "hints"},
	"parked":    {"peer"},
	"resend":    {"peer"},
	"discard":   {"peer"},
	"forget":    {"peer"},
	"peers":     nil,
	"info":      nil,
	"wake":      nil,
	"export":    {"name", "iface"},
	"resolve":   {"call", "value", "rejected", "error"},
	"redeem":    {"url"},
	"call":      {"ref", "method", "args"},
}

// opNames is the list of ops for error messages.
const opNames = "send, close, reconnect, peers, parked, resend, discard, forget, info, wake, export, resolve, redeem, call"

// RequestError is a bad request: what was wrong and where (a field, a byte
// offset in the line or body, an item of a batch). It wraps ErrBadRequest.
type RequestError struct {
	// Field is the field at fault ("" when the request is not an object or
	// not JSON).
	Field string
	// Offset is the byte offset of a syntax error or of trailing data in
	// the line or body (-1 when none applies).
	Offset int64
	// Item is the 0-based position in a batch (-1 outside a batch).
	Item int
	// Msg says what is wrong.
	Msg string
}

func (e *RequestError) Error() string {
	var b strings.Builder
	b.WriteString("bad request: ")
	if e.Item >= 0 {
		fmt.Fprintf(&b, "item %d: ", e.Item)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Msg)
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " (at byte %d)", e.Offset)
	}
	return b.String()
}

func (e *RequestError) Unwrap() error { return ErrBadRequest }

func fieldError(field, format string, a ...any) *RequestError {
	return &RequestError{Field: field, Offset: -1, Item: -1, Msg: fmt.Sprintf(format, a...)}
}

func posError(offset int64, format string, a ...any) *RequestError {
	return &RequestError{Offset: offset, Item: -1, Msg: fmt.Sprintf(format, a...)}
}

// atItem marks err as concerning item i of a batch.
func atItem(err error, i int) error {
	var re *RequestError
	if errors.As(err, &re) {
		c := *re
		c.Item = i
		return &c
	}
	return err
}

// member is one field of a JSON object, in input order.
type member struct {
	key string
	val json.RawMessage
}

// parseObject reads exactly one JSON object from b: anything after it but
// white space (a second object, trailing text) is an error, and so is a
// field that appears twice.
func parseObject(b []byte) ([]member, error) {
	if ms, ok := scanObject(b); ok {
		return ms, nil
	}
	return decodeObject(b)
}

// decodeObject is parseObject's slow path, with json.Decoder: it finds and
// names every mistake.
func decodeObject(b []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(dec, err, "malformed JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, posError(0, "malformed JSON: want an object, got %s", jsonKind(b))
	}
	var ms []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(dec, err, "malformed JSON")
		}
		key := tok.(string) // inside an object, a token before a value is its key
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, syntaxError(dec, err, fmt.Sprintf("malformed JSON in field %q", key))
		}
		for _, m := range ms {
			if m.key == key {
				return nil, fieldError(key, "appears twice")
			}
		}
		ms = append(ms, member{key, val})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntaxError(dec, err, "malformed JSON")
	}
	end := dec.InputOffset()
	if rest := bytes.TrimSpace(b[end:]); len(rest) > 0 {
		what := "trailing data"
		if rest[0] == '{' {
			what = "a second JSON object"
		}
		return nil, posError(end+int64(len(b[end:])-len(bytes.TrimLeft(b[end:], " \t\r\n"))),
			"%s after the request object: one request per line (or body)", what)
	}
	return ms, nil
}

// scanObject is parseObject's fast path for a valid JSON object without
// duplicate fields; false sends the caller to the slow path, which says
// what is wrong.
func scanObject(b []byte) ([]member, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return nil, false
	}
	var ms []member
	for i = skipSpace(b, i+1); b[i] != '}'; {
		kEnd := endOfString(b, i)
		key, ok := plainString(b[i:kEnd])
		if !ok {
			return nil, false // an escaped key: the slow path decodes it
		}
		i = skipSpace(b, skipSpace(b, kEnd)+1) // past the colon
		vEnd := endOfValue(b, i)
		for _, m := range ms {
			if m.key == key {
				return nil, false
			}
		}
		ms = append(ms, member{key, b[i:vEnd]})
		if i = skipSpace(b, vEnd); b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return ms, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// endOfString returns the index after the string that starts at b[i].
func endOfString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// endOfValue returns the index after the (valid) value that starts at b[i].
func endOfValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endOfString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[j])) {
		j++
	}
	return j
}

// plainString returns a JSON string without escapes as a Go string.
func plainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

func syntaxError(dec *json.Decoder, err error, what string) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return posError(se.Offset, "%s: %v", what, se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return posError(dec.InputOffset(), "%s: unexpected end of input", what)
	}
	return posError(dec.InputOffset(), "%s: %v", what, err)
}

// jsonKind names the JSON type of a value by its first byte.
func jsonKind(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if v[0] == '-' || (v[0] >= '0' && v[0] <= '9') {
		return "a number"
	}
	return "something that is not JSON"
}

// parseRequest checks one request object. defaultOp is the op of an API
// endpoint ("" on stdio, where "op" is required); there an "op" field, if
// present, must name the endpoint's op.
func parseRequest(b []byte, defaultOp string) (request, error) {
	ms, err := parseObject(b)
	if err != nil {
		return request{}, err
	}
	r := request{Op: defaultOp}
	for _, m := range ms {
		switch m.key {
		case "op":
			var op string
			if err := json.Unmarshal(m.val, &op); err != nil {
				return r, fieldError("op", "want a string, got %s", jsonKind(m.val))
			}
			if defaultOp != "" && op != defaultOp {
				return r, fieldError("op", "%q does not belong here (this endpoint is %q)", op, defaultOp)
			}
			r.Op = op
		case "id":
			r.ID = m.val
		}
	}
	if r.Op == "" {
		return r, fieldError("op", "is required (one of %s)", opNames)
	}
	allowed, ok := opFields[r.Op]
	if !ok {
		return r, fieldError("op", "unknown op %q (%s)", r.Op, opNames)
	}
	for _, m := range ms {
		if m.key == "op" || m.key == "id" {
			continue
		}
		if !slices.Contains(allowed, m.key) {
			takes := "only op and id"
			if len(allowed) > 0 {
				takes = "op, id, " + strings.Join(allowed, ", ")
			}
			return r, fieldError(m.key, "unknown field for op %q (it takes %s)", r.Op, takes)
		}
		if err := r.setField(m.key, m.val); err != nil {
			return r, err
		}
	}
	return r, r.check()
}

func (r *request) setField(key string, val json.RawMessage) error {
	str := func() (string, error) {
		if s, ok := plainString(val); ok {
			return s, nil
		}
		var s string
		if err := json.Unmarshal(val, &s); err != nil {
			return "", fieldError(key, "want a string, got %s", jsonKind(val))
		}
		return s, nil
	}
	switch key {
	case "to", "peer":
		s, err := str()
		if err != nil {
			return err
		}
		id, err := decodePeer(s)
		if err != nil {
			return fieldError(key, "invalid peer ID %q: %v", s, err)
		}
		if key == "to" {
			r.To = id
		} else {
			r.Peer = id
		}
	case "method", "name", "iface", "call", "url", "ref", "error":
		s, err := str()
		if err != nil {
			return err
		}
		*map[string]*string{"method": &r.Method, "name": &r.Name, "iface": &r.Iface, "call": &r.Call, "url": &r.URL,
			"ref": &r.Ref, "error": &r.Error}[key] = s
	case "value":
		r.Value = val
	case "args":
		if jsonKind(val) != "an array" {
			return fieldError(key, "want an array of values, got %s", jsonKind(val))
		}
		r.Args = val
	case "rejected":
		if err := json.Unmarshal(val, &r.Rejected); err != nil {
			return fieldError(key, "want a boolean, got %s", jsonKind(val))
		}
	case "params":
		r.Params = val
	case "hints":
		if jsonKind(val) != "an array" {
			return fieldError(key, "want an array of multiaddr strings, got %s", jsonKind(val))
		}
		var hs []json.RawMessage
		if err := json.Unmarshal(val, &hs); err != nil {
			return fieldError(key, "%v", err)
		}
		r.Hints = make([]string, len(hs))
		for i, h := range hs {
			if err := json.Unmarshal(h, &r.Hints[i]); err != nil {
				return fieldError(key, "item %d: want a string, got %s", i, jsonKind(h))
			}
		}
	}
	return nil
}

// check applies the rules that go beyond types: required fields, hints.
func (r *request) check() error {
	switch r.Op {
	case "send":
		if r.To == "" {
			return fieldError("to", "is required")
		}
		if r.Method == "" {
			return fieldError("method", "is required")
		}
		if err := transport.CheckHints(r.To, r.Hints); err != nil {
			return fieldError("hints", "%v", err)
		}
	case "resolve":
		if r.Call == "" {
			return fieldError("call", "is required")
		}
		if r.Error != "" && (r.Value != nil || r.Rejected) {
			return fieldError("error", "goes without value and rejected (it rejects with an Error of that message)")
		}
	case "redeem":
		if r.URL == "" {
			return fieldError("url", "is required")
		}
	case "call":
		if r.Ref == "" {
			return fieldError("ref", "is required")
		}
		if r.Method == "" {
			return fieldError("method", "is required")
		}
	case "close", "reconnect", "parked", "resend", "discard", "forget":
		if r.Peer == "" {
			return fieldError("peer", "is required")
		}
		if r.Op == "reconnect" {
			if err := transport.CheckHints(r.Peer, r.Hints); err != nil {
				return fieldError("hints", "%v", err)
			}
		}
	}
	return nil
}

// parseBatch reads a JSON array of request objects (an API batch body).
// Every item must be valid; the first bad one is the error.
func parseBatch(b []byte, defaultOp string) ([]request, error) {
	var items []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&items); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, posError(te.Offset, "want an array of request objects")
		}
		return nil, syntaxError(dec, err, "malformed JSON")
	}
	end := dec.InputOffset()
	if rest := bytes.TrimSpace(b[end:]); len(rest) > 0 {
		return nil, posError(end, "trailing data after the array")
	}
	if len(items) == 0 {
		return nil, posError(-1, "empty batch")
	}
	reqs := make([]request, len(items))
	for i, it := range items {
		r, err := parseRequest(it, defaultOp)
		if err != nil {
			return nil, atItem(err, i)
		}
		reqs[i] = r
	}
	return reqs, nil
}

// parseNDJSON reads one request object per non-empty line.
func parseNDJSON(b []byte, defaultOp string) ([]request, error) {
	var reqs []request
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r, err := parseRequest(line, defaultOp)
		if err != nil {
			var re *RequestError
			if errors.As(err, &re) {
				c := *re
				c.Msg = fmt.Sprintf("line %d: %s", i+1, c.Msg)
				c.Item = len(reqs)
				return nil, &c
			}
			return nil, err
		}
		reqs = append(reqs, r)
	}
	if len(reqs) == 0 {
		return nil, posError(-1, "empty batch")
	}
	return reqs, nil
}
