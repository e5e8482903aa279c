package kernelwire

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/ocapnet/ocapnet/internal/jsjson"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// The envelope methods (§3) and deliver kinds.
const (
	MethodDeliver        = "deliver"
	MethodRedeemURL      = "redeemURL"
	MethodRedeemURLReply = "redeemURLReply"

	KindMessage          = "message"
	KindNotify           = "notify"
	KindDropExports      = "dropExports"
	KindRetireExports    = "retireExports"
	KindRetireImports    = "retireImports"
	KindBringOutYourDead = "bringOutYourDead"
)

// Message is one kernel-layer message: one of *Send, *Notify,
// *DropExports, *RetireExports, *RetireImports, *BringOutYourDead,
// *RedeemURL and *RedeemURLReply.
type Message interface {
	// Method is the envelope's method: deliver, redeemURL or
	// redeemURLReply.
	Method() string
	// Kind is the deliver kind (message, notify, …), or the method for
	// the other two.
	Kind() string
	appendParams(b []byte) ([]byte, error)
}

// Send is deliver "message": call Target with Methargs, the CapData of
// [method, args] (§3.1): ["message", target, {"methargs": …, "result": …}].
type Send struct {
	Target   RRef
	Methargs smallcaps.CapData
	// Result is the promise to resolve with the outcome. nil means no
	// result: the key is left out, or written null when NullResult is set
	// (the JavaScript kernel may send either; Go must always send one).
	Result     *RRef
	NullResult bool
}

// Resolution is one entry of a notify: [promise, rejected, data].
type Resolution struct {
	Promise  RRef
	Rejected bool
	Data     smallcaps.CapData
}

// Notify is deliver "notify": resolve promises, in order (§3.2).
type Notify struct{ Resolutions []Resolution }

// DropExports is deliver "dropExports" (§5). From the JavaScript kernel
// its references name objects the receiver exported, whatever their sign
// (§5.2): look them up in the export table by number.
type DropExports struct{ Refs []RRef }

// RetireExports is deliver "retireExports" (§5). From the JavaScript
// kernel its references name objects the receiver exported, whatever their
// sign (§5.2).
type RetireExports struct{ Refs []RRef }

// RetireImports is deliver "retireImports" (§5). From the JavaScript
// kernel its references name objects the receiver imported, whatever their
// sign (§5.2).
type RetireImports struct{ Refs []RRef }

// BringOutYourDead is deliver "bringOutYourDead" (§3.4).
type BringOutYourDead struct{}

// RedeemURL asks the peer for the object an OCAP URL names (§3.5):
// [url, replyKey].
type RedeemURL struct {
	URL      string
	ReplyKey string
}

// RedeemURLReply answers a RedeemURL (§3.6): [true, replyKey, ref] or
// [false, replyKey, error text].
type RedeemURLReply struct {
	OK       bool
	ReplyKey string
	// Ref is the redeemed reference when OK.
	Ref RRef
	// Error is the failure text when not OK.
	Error string
}

func (*Send) Method() string             { return MethodDeliver }
func (*Notify) Method() string           { return MethodDeliver }
func (*DropExports) Method() string      { return MethodDeliver }
func (*RetireExports) Method() string    { return MethodDeliver }
func (*RetireImports) Method() string    { return MethodDeliver }
func (*BringOutYourDead) Method() string { return MethodDeliver }
func (*RedeemURL) Method() string        { return MethodRedeemURL }
func (*RedeemURLReply) Method() string   { return MethodRedeemURLReply }

func (*Send) Kind() string             { return KindMessage }
func (*Notify) Kind() string           { return KindNotify }
func (*DropExports) Kind() string      { return KindDropExports }
func (*RetireExports) Kind() string    { return KindRetireExports }
func (*RetireImports) Kind() string    { return KindRetireImports }
func (*BringOutYourDead) Kind() string { return KindBringOutYourDead }
func (*RedeemURL) Kind() string        { return MethodRedeemURL }
func (*RedeemURLReply) Kind() string   { return MethodRedeemURLReply }

// Encode returns m's envelope method and params, byte for byte as the
// JavaScript kernel writes them. It checks only that m can be written
// (references in range, text valid UTF-8); ValidateOutgoing checks that it
// may be sent.
func Encode(m Message) (method string, params json.RawMessage, err error) {
	if m == nil {
		return "", nil, fmt.Errorf("%w: nil message", ErrMalformed)
	}
	b, err := m.appendParams(make([]byte, 0, 128))
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %v", ErrMalformed, m.Kind(), err)
	}
	return m.Method(), b, nil
}

func appendRef(b []byte, r RRef) ([]byte, error) {
	if why := r.valid(); why != "" {
		return nil, fmt.Errorf("%s", why)
	}
	b = append(b, '"')
	b = r.append(b)
	return append(b, '"'), nil
}

func appendText(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("text %q is not valid UTF-8", truncate(s))
	}
	return jsjson.AppendString(b, s), nil
}

func appendCapData(b []byte, cd smallcaps.CapData) ([]byte, error) {
	if !utf8.ValidString(cd.Body) {
		return nil, fmt.Errorf("body is not valid UTF-8")
	}
	for _, s := range cd.Slots {
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("slot %q is not valid UTF-8", truncate(s))
		}
	}
	return cd.AppendJSON(b), nil
}

func (m *Send) appendParams(b []byte) ([]byte, error) {
	var err error
	b = append(b, `["message",`...)
	if b, err = appendRef(b, m.Target); err != nil {
		return nil, fmt.Errorf("target: %v", err)
	}
	b = append(b, `,{"methargs":`...)
	if b, err = appendCapData(b, m.Methargs); err != nil {
		return nil, fmt.Errorf("methargs: %v", err)
	}
	switch {
	case m.Result != nil:
		b = append(b, `,"result":`...)
		if b, err = appendRef(b, *m.Result); err != nil {
			return nil, fmt.Errorf("result: %v", err)
		}
	case m.NullResult:
		b = append(b, `,"result":null`...)
	}
	return append(b, "}]"...), nil
}

func (m *Notify) appendParams(b []byte) ([]byte, error) {
	var err error
	b = append(b, `["notify",[`...)
	for i, r := range m.Resolutions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		if b, err = appendRef(b, r.Promise); err != nil {
			return nil, fmt.Errorf("resolution %d: %v", i, err)
		}
		b = append(b, ',')
		b = strconv.AppendBool(b, r.Rejected)
		b = append(b, ',')
		if b, err = appendCapData(b, r.Data); err != nil {
			return nil, fmt.Errorf("resolution %d: %v", i, err)
		}
		b = append(b, ']')
	}
	return append(b, "]]"...), nil
}

func appendGC(b []byte, kind string, refs []RRef) ([]byte, error) {
	var err error
	b = append(b, `["`...)
	b = append(b, kind...)
	b = append(b, `",[`...)
	for i, r := range refs {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendRef(b, r); err != nil {
			return nil, fmt.Errorf("ref %d: %v", i, err)
		}
	}
	return append(b, "]]"...), nil
}

func (m *DropExports) appendParams(b []byte) ([]byte, error) {
	return appendGC(b, KindDropExports, m.Refs)
}

func (m *RetireExports) appendParams(b []byte) ([]byte, error) {
	return appendGC(b, KindRetireExports, m.Refs)
}

func (m *RetireImports) appendParams(b []byte) ([]byte, error) {
	return appendGC(b, KindRetireImports, m.Refs)
}

func (*BringOutYourDead) appendParams(b []byte) ([]byte, error) {
	return append(b, `["bringOutYourDead"]`...), nil
}

func (m *RedeemURL) appendParams(b []byte) ([]byte, error) {
	var err error
	b = append(b, '[')
	if b, err = appendText(b, m.URL); err != nil {
		return nil, fmt.Errorf("url: %v", err)
	}
	b = append(b, ',')
	if b, err = appendText(b, m.ReplyKey); err != nil {
		return nil, fmt.Errorf("replyKey: %v", err)
	}
	return append(b, ']'), nil
}

func (m *RedeemURLReply) appendParams(b []byte) ([]byte, error) {
	var err error
	b = append(b, '[')
	b = strconv.AppendBool(b, m.OK)
	b = append(b, ',')
	if b, err = appendText(b, m.ReplyKey); err != nil {
		return nil, fmt.Errorf("replyKey: %v", err)
	}
	b = append(b, ',')
	if m.OK {
		if b, err = appendRef(b, m.Ref); err != nil {
			return nil, fmt.Errorf("ref: %v", err)
		}
	} else if b, err = appendText(b, m.Error); err != nil {
		return nil, fmt.Errorf("error: %v", err)
	}
	return append(b, ']'), nil
}
