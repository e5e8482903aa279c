package kernelwire

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ocapnet/ocapnet/internal/jsjson"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// Decode errors. The first two carry the JavaScript kernel's own texts.
var (
	// ErrUnknownMethod: the envelope's method is none of deliver,
	// redeemURL, redeemURLReply.
	ErrUnknownMethod = errors.New("unknown remote message type")
	// ErrUnknownDelivery: a deliver kind other than the six of §3.
	ErrUnknownDelivery = errors.New("unknown remote delivery method")
	// ErrMalformed: params that do not have the message's shape.
	ErrMalformed = errors.New("malformed kernel message")
)

// maxParamsDepth bounds the nesting of params: the deepest message, a
// notify, nests four deep (bodies are strings).
const maxParamsDepth = 16

// Decode reads the params of an envelope with the given method. It is
// strict where the JavaScript kernel is loose (references must be
// well-formed RRefs, rejected a boolean, no key twice in an object) and
// as loose as it is elsewhere: array elements past the ones a message
// has and unknown object keys are ignored. Bodies are not parsed: decode
// them with package smallcaps. Errors wrap ErrUnknownMethod,
// ErrUnknownDelivery or ErrMalformed and say what was wrong where.
func Decode(method string, params json.RawMessage) (Message, error) {
	switch method {
	case MethodDeliver, MethodRedeemURL, MethodRedeemURLReply:
	default:
		return nil, fmt.Errorf("%w %s", ErrUnknownMethod, quoted(method))
	}
	if params == nil {
		return nil, fmt.Errorf("%w: %s without params", ErrMalformed, method)
	}
	v, err := jsjson.Parse(params, maxParamsDepth)
	if err != nil {
		return nil, fmt.Errorf("%w: %s params: %v", ErrMalformed, method, err)
	}
	d := decoder{where: method}
	if v.Kind != jsjson.Array {
		return nil, d.fail("params is a %v, not an array", v.Kind)
	}
	switch method {
	case MethodRedeemURL:
		return d.redeemURL(v.Elems)
	case MethodRedeemURLReply:
		return d.redeemURLReply(v.Elems)
	}
	if len(v.Elems) == 0 || v.Elems[0].Kind != jsjson.String {
		return nil, d.fail("params[0], the delivery method, is missing or not a string")
	}
	kind, args := v.Elems[0].Text, v.Elems[1:]
	d.where = "deliver " + kind
	switch kind {
	case KindMessage:
		return d.send(args)
	case KindNotify:
		return d.notify(args)
	case KindDropExports:
		refs, err := d.refList(args)
		return &DropExports{Refs: refs}, err
	case KindRetireExports:
		refs, err := d.refList(args)
		return &RetireExports{Refs: refs}, err
	case KindRetireImports:
		refs, err := d.refList(args)
		return &RetireImports{Refs: refs}, err
	case KindBringOutYourDead:
		return &BringOutYourDead{}, nil
	}
	return nil, fmt.Errorf("%w %s", ErrUnknownDelivery, quoted(kind))
}

type decoder struct{ where string }

func (d decoder) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, d.where, fmt.Sprintf(format, args...))
}

func quoted(s string) string { return fmt.Sprintf("%q", truncate(s)) }

func (d decoder) arg(args []*jsjson.Value, i int, name string, kind jsjson.Kind) (*jsjson.Value, error) {
	if i >= len(args) {
		return nil, d.fail("%s is missing", name)
	}
	if args[i].Kind != kind {
		return nil, d.fail("%s is a %v, not a %v", name, args[i].Kind, kind)
	}
	return args[i], nil
}

func (d decoder) ref(v *jsjson.Value, name string) (RRef, error) {
	if v.Kind != jsjson.String {
		return RRef{}, d.fail("%s is a %v, not an RRef string", name, v.Kind)
	}
	r, err := ParseRRef(v.Text)
	if err != nil {
		return RRef{}, d.fail("%s: %v", name, err)
	}
	return r, nil
}

// object returns an object's members by key, refusing a repeated key.
func (d decoder) object(v *jsjson.Value, name string) (map[string]*jsjson.Value, error) {
	if v.Kind != jsjson.Object {
		return nil, d.fail("%s is a %v, not an object", name, v.Kind)
	}
	m := make(map[string]*jsjson.Value, len(v.Members))
	for _, f := range v.Members {
		if _, dup := m[f.Key]; dup {
			return nil, d.fail("%s has the key %s twice", name, quoted(f.Key))
		}
		m[f.Key] = f.Value
	}
	return m, nil
}

func (d decoder) capData(v *jsjson.Value, name string) (smallcaps.CapData, error) {
	m, err := d.object(v, name)
	if err != nil {
		return smallcaps.CapData{}, err
	}
	body, ok := m["body"]
	if !ok || body.Kind != jsjson.String {
		return smallcaps.CapData{}, d.fail("%s.body is missing or not a string", name)
	}
	slots, ok := m["slots"]
	if !ok || slots.Kind != jsjson.Array {
		return smallcaps.CapData{}, d.fail("%s.slots is missing or not an array", name)
	}
	cd := smallcaps.CapData{Body: body.Text, Slots: make([]string, len(slots.Elems))}
	for i, s := range slots.Elems {
		if _, err := d.ref(s, fmt.Sprintf("%s.slots[%d]", name, i)); err != nil {
			return smallcaps.CapData{}, err
		}
		cd.Slots[i] = s.Text
	}
	return cd, nil
}

func (d decoder) send(args []*jsjson.Value) (Message, error) {
	if len(args) == 0 {
		return nil, d.fail("target is missing")
	}
	target, err := d.ref(args[0], "target")
	if err != nil {
		return nil, err
	}
	msgV, err := d.arg(args, 1, "the message", jsjson.Object)
	if err != nil {
		return nil, err
	}
	msg, err := d.object(msgV, "the message")
	if err != nil {
		return nil, err
	}
	methargs, ok := msg["methargs"]
	if !ok {
		return nil, d.fail("methargs is missing")
	}
	m := &Send{Target: target}
	if m.Methargs, err = d.capData(methargs, "methargs"); err != nil {
		return nil, err
	}
	if result, ok := msg["result"]; ok {
		if result.Kind == jsjson.Null {
			m.NullResult = true
		} else {
			r, err := d.ref(result, "result")
			if err != nil {
				return nil, err
			}
			m.Result = &r
		}
	}
	return m, nil
}

func (d decoder) notify(args []*jsjson.Value) (Message, error) {
	list, err := d.arg(args, 0, "the resolutions", jsjson.Array)
	if err != nil {
		return nil, err
	}
	m := &Notify{Resolutions: make([]Resolution, len(list.Elems))}
	for i, e := range list.Elems {
		name := fmt.Sprintf("resolution %d", i)
		if e.Kind != jsjson.Array || len(e.Elems) < 3 {
			return nil, d.fail("%s is not [promise, rejected, data]", name)
		}
		r := &m.Resolutions[i]
		if r.Promise, err = d.ref(e.Elems[0], name+" promise"); err != nil {
			return nil, err
		}
		if e.Elems[1].Kind != jsjson.Bool {
			return nil, d.fail("%s rejected is a %v, not a boolean", name, e.Elems[1].Kind)
		}
		r.Rejected = e.Elems[1].Bool
		if r.Data, err = d.capData(e.Elems[2], name+" data"); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (d decoder) refList(args []*jsjson.Value) ([]RRef, error) {
	list, err := d.arg(args, 0, "the reference list", jsjson.Array)
	if err != nil {
		return nil, err
	}
	refs := make([]RRef, len(list.Elems))
	for i, e := range list.Elems {
		if refs[i], err = d.ref(e, fmt.Sprintf("ref %d", i)); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

func (d decoder) redeemURL(args []*jsjson.Value) (Message, error) {
	url, err := d.arg(args, 0, "the URL", jsjson.String)
	if err != nil {
		return nil, err
	}
	key, err := d.arg(args, 1, "the reply key", jsjson.String)
	if err != nil {
		return nil, err
	}
	return &RedeemURL{URL: url.Text, ReplyKey: key.Text}, nil
}

func (d decoder) redeemURLReply(args []*jsjson.Value) (Message, error) {
	ok, err := d.arg(args, 0, "the success flag", jsjson.Bool)
	if err != nil {
		return nil, err
	}
	key, err := d.arg(args, 1, "the reply key", jsjson.String)
	if err != nil {
		return nil, err
	}
	m := &RedeemURLReply{OK: ok.Bool, ReplyKey: key.Text}
	if len(args) < 3 {
		return nil, d.fail("the reference or error text is missing")
	}
	if m.OK {
		if m.Ref, err = d.ref(args[2], "the reference"); err != nil {
			return nil, err
		}
		return m, nil
	}
	text, err := d.arg(args, 2, "the error text", jsjson.String)
	if err != nil {
		return nil, err
	}
	m.Error = text.Text
	return m, nil
}
