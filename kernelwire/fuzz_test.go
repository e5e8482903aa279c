package kernelwire

import (
	"errors"
	"reflect"
	"strconv"
	"testing"

	"github.com/ocapnet/ocapnet/smallcaps"
)

// FuzzDecode feeds arbitrary methods and params to Decode and what it
// accepts to ValidateOutgoing, with and without tables: neither may panic,
// Decode's errors carry a category, and an accepted message re-encodes to
// params that decode to the same message.
func FuzzDecode(f *testing.F) {
	for _, s := range transcript() {
		if m, err := wireDecode(s.frame); err == nil {
			f.Add(m.method, m.params)
		}
	}
	f.Add("deliver", `["retireImports",["ro+1","ro-2"]]`)
	f.Add("deliver", `["bringOutYourDead"]`)
	f.Add("redeemURLReply", `[false,"3","bad ocap URL"]`)
	f.Fuzz(func(t *testing.T, method, params string) {
		m, err := Decode(method, []byte(params))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownMethod) && !errors.Is(err, ErrUnknownDelivery) {
				t.Fatalf("Decode error without a category: %v", err)
			}
			return
		}
		method2, params2, err := Encode(m)
		if err != nil {
			t.Fatalf("Decode(%s, %s) = %#v, which does not encode: %v", method, params, m, err)
		}
		m2, err := Decode(method2, params2)
		if err != nil || method2 != method || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %s %s: %s %s gave %#v (%v)", method, params, method2, params2, m2, err)
		}
		st := newTables()
		for _, r := range []string{"ro+1", "rp+1", "rp+2"} {
			st.importRef(r)
		}
		st.resolvable[*ref("rp-1")] = true
		st.fresh[1] = true
		st.awaiting["1"] = true
		for _, s := range []State{nil, st} {
			if err := ValidateOutgoing(m, s); err != nil && !errors.Is(err, ErrPoison) {
				t.Fatalf("ValidateOutgoing error without ErrPoison: %v", err)
			}
		}
	})
}

// FuzzOutgoingValid builds well-formed outgoing messages from the fuzzer's
// bytes the way an endpoint would (CapData from smallcaps.Encode, refs by
// the sign rule, a fresh result, tables that hold what is referenced):
// each must pass ValidateOutgoing, encode, and decode back unchanged.
func FuzzOutgoingValid(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3})
	f.Add([]byte{1, 9, 4, 4, 0, 7})
	f.Add([]byte{2, 3, 3, 3, 3})
	f.Add([]byte{5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &outGen{data: data, st: newTables()}
		m := g.message()
		if m == nil {
			return
		}
		if err := ValidateOutgoing(m, g.st); err != nil {
			t.Fatalf("well-formed %#v refused: %v", m, err)
		}
		method, params, err := EncodeOutgoing(m, g.st)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(method, params)
		if err != nil {
			t.Fatalf("Decode(%s, %s): %v", method, params, err)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("decoded %#v, sent %#v", back, m)
		}
	})
}

type outGen struct {
	data []byte
	st   *tables
}

func (g *outGen) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

// ref picks a reference of kind k that Go may send: its own, or one of the
// peer's that the tables then hold.
func (g *outGen) ref(k Kind) RRef {
	n := uint64(g.byte()%5) + 1
	if g.byte()%2 == 0 {
		return OutRef(k, Local, n)
	}
	r := OutRef(k, Remote, n)
	g.st.imports[[2]uint64{uint64(k), n}] = true
	return r
}

// value makes a smallcaps value whose slots are references Go may send.
func (g *outGen) value(depth int) any {
	switch op := g.byte() % 9; {
	case depth > 3 || op == 0:
		return []any{"s", "!x", "", "é😀"}[g.byte()%4]
	case op == 1:
		return float64(int8(g.byte())) / 4
	case op == 2:
		return smallcaps.Remotable{Slot: g.ref(Object).String(), Iface: "Alleged: T" + strconv.Itoa(int(g.byte()%3))}
	case op == 3:
		return smallcaps.Promise{Slot: g.ref(Promise).String()}
	case op == 4:
		return &smallcaps.Error{Name: "TypeError", Message: "m"}
	case op == 5:
		r := smallcaps.Record{}
		for i := range int(g.byte() % 3) {
			r = append(r, smallcaps.Field{Key: "k" + strconv.Itoa(i), Value: g.value(depth + 1)})
		}
		return r
	default:
		a := make([]any, g.byte()%3)
		for i := range a {
			a[i] = g.value(depth + 1)
		}
		return a
	}
}

// capData encodes a value; references to one slot string always carry the
// same iface here, so encoding cannot fail on them except when one slot
// would be both an object and a promise, which the refs' kinds rule out.
func (g *outGen) capData(v any) (smallcaps.CapData, bool) {
	cd, err := smallcaps.Encode(v)
	if err != nil {
		return cd, false // two ifaces for one slot string: not well-formed
	}
	if cd.Slots == nil {
		cd.Slots = []string{}
	}
	return cd, true
}

func (g *outGen) message() Message {
	switch g.byte() % 6 {
	case 0:
		result := OutRef(Promise, Local, 100+uint64(g.byte()))
		g.st.fresh[result.N] = true
		cd, ok := g.capData([]any{"method", []any{g.value(0), g.value(0)}})
		if !ok {
			return nil
		}
		target := OutRef([]Kind{Object, Promise}[g.byte()%2], Remote, uint64(g.byte()%5)+1)
		g.st.imports[[2]uint64{uint64(target.Kind), target.N}] = true
		return &Send{Target: target, Methargs: cd, Result: &result}
	case 1:
		m := &Notify{}
		for i := range int(g.byte()%3) + 1 {
			p := OutRef(Promise, []Side{Local, Remote}[g.byte()%2], 200+uint64(i))
			if !p.Plus {
				g.st.imports[[2]uint64{uint64(Promise), p.N}] = true
			}
			g.st.resolvable[p] = true
			cd, ok := g.capData(g.value(0))
			if !ok {
				return nil
			}
			m.Resolutions = append(m.Resolutions, Resolution{Promise: p, Rejected: g.byte()%2 == 0, Data: cd})
		}
		return m
	case 2:
		refs := g.objects(Remote)
		for _, r := range refs {
			g.st.dropped[r.N] = true
		}
		if g.byte()%2 == 0 {
			return &DropExports{Refs: refs}
		}
		return &RetireExports{Refs: refs}
	case 3:
		refs := g.objects(Local)
		for _, r := range refs {
			g.st.peerDropped[r.N] = true
		}
		return &RetireImports{Refs: refs}
	case 4:
		return &RedeemURL{URL: "ocap:z" + strconv.Itoa(int(g.byte())) + "@12D3KooWPeer", ReplyKey: strconv.Itoa(int(g.byte()) + 1)}
	default:
		key := strconv.Itoa(int(g.byte()))
		g.st.awaiting[key] = true
		if g.byte()%2 == 0 {
			return &RedeemURLReply{OK: true, ReplyKey: key, Ref: OutRef([]Kind{Object, Promise}[g.byte()%2], Local, uint64(g.byte())+1)}
		}
		return &RedeemURLReply{ReplyKey: key, Error: "ocapURL has bad object reference"}
	}
}

// objects returns 1 to 3 distinct object references of one side.
func (g *outGen) objects(by Side) []RRef {
	var refs []RRef
	for i := range int(g.byte()%3) + 1 {
		r := OutRef(Object, by, uint64(i)+1)
		if by == Remote {
			g.st.imports[[2]uint64{uint64(Object), r.N}] = true
		}
		refs = append(refs, r)
	}
	return refs
}
