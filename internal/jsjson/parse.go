package jsjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Kind is the type of a parsed JSON value.
type Kind uint8

// The JSON value kinds.
const (
	Null Kind = iota
	Bool
	Number
	String
	Array
	Object
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "boolean"
	case Number:
		return "number"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Value is one parsed JSON value.
type Value struct {
	Kind Kind
	// Bool is the value of a boolean.
	Bool bool
	// Text is a string's decoded text, or a number's literal text as
	// written (so that callers choose how to read it).
	Text string
	// Elems are an array's elements.
	Elems []*Value
	// Members are an object's members in source order; a key that occurs
	// twice is listed twice.
	Members []Member
}

// Member is one "key": value pair of an object.
type Member struct {
	Key   string
	Value *Value
}

// ErrSyntax reports text that is not one valid JSON value.
var ErrSyntax = errors.New("not valid JSON")

// Parse reads data as exactly one JSON value (surrounding whitespace
// allowed), nested at most maxDepth arrays and objects deep. Strings are
// decoded as encoding/json decodes them: invalid UTF-8 and unpaired
// surrogate escapes become U+FFFD. Errors wrap ErrSyntax.
func Parse(data []byte, maxDepth int) (*Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	p := parser{dec: dec, maxDepth: maxDepth}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: unexpected text after the value at offset %d", ErrSyntax, dec.InputOffset())
	}
	return v, nil
}

type parser struct {
	dec      *json.Decoder
	maxDepth int
}

func (p *parser) token() (json.Token, error) {
	t, err := p.dec.Token()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: unexpected end of input", ErrSyntax)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return t, nil
}

func (p *parser) value(depth int) (*Value, error) {
	t, err := p.token()
	if err != nil {
		return nil, err
	}
	return p.valueFrom(t, depth)
}

func (p *parser) valueFrom(t json.Token, depth int) (*Value, error) {
	switch t := t.(type) {
	case nil:
		return &Value{Kind: Null}, nil
	case bool:
		return &Value{Kind: Bool, Bool: t}, nil
	case json.Number:
		return &Value{Kind: Number, Text: string(t)}, nil
	case string:
		return &Value{Kind: String, Text: t}, nil
	case json.Delim:
		if depth >= p.maxDepth {
			return nil, fmt.Errorf("%w: nested deeper than %d at offset %d", ErrSyntax, p.maxDepth, p.dec.InputOffset())
		}
		if t == '[' {
			v := &Value{Kind: Array, Elems: []*Value{}}
			for {
				t, err := p.token()
				if err != nil {
					return nil, err
				}
				if t == json.Delim(']') {
					return v, nil
				}
				e, err := p.valueFrom(t, depth+1)
				if err != nil {
					return nil, err
				}
				v.Elems = append(v.Elems, e)
			}
		}
		// '{': the decoder only returns '{' or '[' here.
		v := &Value{Kind: Object, Members: []Member{}}
		for {
			t, err := p.token()
			if err != nil {
				return nil, err
			}
			if t == json.Delim('}') {
				return v, nil
			}
			key := t.(string) // the decoder guarantees a string key here
			e, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			v.Members = append(v.Members, Member{Key: key, Value: e})
		}
	}
	return nil, fmt.Errorf("%w: unexpected token %v", ErrSyntax, t)
}
