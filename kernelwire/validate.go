package kernelwire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ocapnet/ocapnet/smallcaps"
)

// ErrPoison is wrapped by ValidateOutgoing's errors: sending the message
// would poison the peer (§3.7) or could mean nothing to it.
var ErrPoison = errors.New("refusing to send")

// State is what ValidateOutgoing needs to know of the endpoint's tables
// for one peer. References are given as the numbers in the frame Go is
// about to send. A nil State skips the checks that need it.
type State interface {
	// Imported reports whether Go holds the peer's allocation n of kind k,
	// which it sends as ro-n / rp-n.
	Imported(k Kind, n uint64) bool
	// CanResolve reports whether Go decides promise p (as it would send
	// it: rp-K for a result the peer allocated, rp+N for Go's own) and has
	// not resolved it yet, not even earlier in the same notify.
	CanResolve(p RRef) bool
	// FreshResult reports whether Go's promise n was allocated for this
	// message's result and never sent before.
	FreshResult(n uint64) bool
	// AwaitingReply reports whether the peer sent redeemURL with key and
	// has not had its reply.
	AwaitingReply(key string) bool
	// DroppedImport reports whether Go has sent dropExports for the
	// peer's object n, so that it may now retire it.
	DroppedImport(n uint64) bool
	// PeerDroppedExport reports whether the peer has dropped Go's object
	// n (dropExports), so that Go may send retireImports for it.
	PeerDroppedExport(n uint64) bool
}

// EncodeOutgoing validates m with ValidateOutgoing and encodes it.
func EncodeOutgoing(m Message, st State) (method string, params json.RawMessage, err error) {
	if err := ValidateOutgoing(m, st); err != nil {
		return "", nil, err
	}
	return Encode(m)
}

// ValidateOutgoing refuses a message Go must not send. Without State:
//
//   - anything Encode cannot write;
//   - a message without a result, or with one that is not Go's own
//     promise rp+N (JavaScript throws "message result must be a string"),
//     or whose result also appears in its slots;
//   - a message to one of Go's own references (+): JavaScript would make
//     Go the owner and route it back;
//   - methargs that is not the CapData of [method, args], with method a
//     string or a symbol and args an array;
//   - CapData that is not canonical smallcaps (exactly what package
//     smallcaps encodes for its value), whose slots are not RRefs, whose
//     "$i" slots are not objects or "&i" slots not promises, or whose
//     remotables carry an iface a vat refuses (anything but "", Remotable,
//     "Alleged: …", "DebugName: …");
//   - an empty notify, one resolving an object reference, or the same
//     promise twice;
//   - empty GC lists, repeated references in them, promise references in
//     them (JavaScript collects objects only), dropExports or
//     retireExports of a reference that is not the peer's (-), and
//     retireImports of one that is not Go's own (+);
//   - redeemURL with an empty URL or reply key; redeemURLReply with an
//     empty reply key, a reference that is not Go's own (+), or an empty
//     failure text.
//
// With State, also:
//
//   - any peer reference (-) Go does not hold: "<ref> is not an export
//     reference";
//   - a result promise that is not fresh;
//   - a notify for a promise Go does not decide or already resolved;
//   - a redeemURLReply nobody is waiting for: "unknown URL redemption
//     reply key";
//   - retireExports before Go dropped the object, retireImports before
//     the peer dropped it: "… is still reachable".
//
// Errors wrap ErrPoison and name the reason.
func ValidateOutgoing(m Message, st State) error {
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrPoison)
	}
	v := validator{st: st, where: m.Kind()}
	if _, _, err := Encode(m); err != nil {
		return fmt.Errorf("%w: %v", ErrPoison, err)
	}
	switch m := m.(type) {
	case *Send:
		return v.send(m)
	case *Notify:
		return v.notify(m)
	case *DropExports:
		return v.gc(m.Refs, false, func(n uint64) bool { return true }, "")
	case *RetireExports:
		return v.gc(m.Refs, false, v.droppedImport, "Go has not dropped it")
	case *RetireImports:
		return v.gc(m.Refs, true, v.peerDroppedExport, "the peer has not dropped it")
	case *BringOutYourDead:
		return nil
	case *RedeemURL:
		if m.URL == "" || m.ReplyKey == "" {
			return v.fail("empty URL or reply key")
		}
		return nil
	case *RedeemURLReply:
		if m.ReplyKey == "" {
			return v.fail("empty reply key")
		}
		if st != nil && !st.AwaitingReply(m.ReplyKey) {
			return v.fail("unknown URL redemption reply key %s", quoted(m.ReplyKey))
		}
		if m.OK && !m.Ref.Plus {
			return v.fail("the redeemed reference %s is not Go's own (+)", m.Ref)
		}
		if !m.OK && m.Error == "" {
			return v.fail("empty failure text")
		}
		return nil
	}
	return v.fail("unknown message type %T", m)
}

type validator struct {
	st    State
	where string
}

func (v validator) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrPoison, v.where, fmt.Sprintf(format, args...))
}

func (v validator) droppedImport(n uint64) bool {
	return v.st == nil || v.st.DroppedImport(n)
}

func (v validator) peerDroppedExport(n uint64) bool {
	return v.st == nil || v.st.PeerDroppedExport(n)
}

// known checks that a peer reference (-) is one Go holds.
func (v validator) known(r RRef) error {
	if !r.Plus && v.st != nil && !v.st.Imported(r.Kind, r.N) {
		return v.fail("%s is not an export reference (Go holds no %s %d of the peer)", r, r.Kind, r.N)
	}
	return nil
}

func (v validator) send(m *Send) error {
	if m.Target.Plus {
		return v.fail("target %s is Go's own reference; the peer would route the message back", m.Target)
	}
	if err := v.known(m.Target); err != nil {
		return err
	}
	if m.Result == nil {
		return v.fail("message result must be a string (Go always sends a fresh rp+N)")
	}
	if r := *m.Result; r.Kind != Promise || !r.Plus {
		return v.fail("result %s is not Go's own promise rp+N", r)
	}
	if v.st != nil && !v.st.FreshResult(m.Result.N) {
		return v.fail("result %s is not a fresh promise", *m.Result)
	}
	for _, s := range m.Methargs.Slots {
		if s == m.Result.String() {
			return v.fail("result %s also appears in the methargs slots", s)
		}
	}
	val, err := v.capData(m.Methargs, "methargs")
	if err != nil {
		return err
	}
	ma, ok := val.([]any)
	if !ok || len(ma) != 2 {
		return v.fail("methargs is not [method, args]")
	}
	switch ma[0].(type) {
	case string, smallcaps.Symbol:
	default:
		return v.fail("the method name is a %T, not a string or symbol", ma[0])
	}
	if _, ok := ma[1].([]any); !ok {
		return v.fail("the arguments are a %T, not an array", ma[1])
	}
	return nil
}

func (v validator) notify(m *Notify) error {
	if len(m.Resolutions) == 0 {
		return v.fail("no resolutions")
	}
	seen := map[RRef]bool{}
	for i, r := range m.Resolutions {
		if r.Promise.Kind != Promise {
			return v.fail("resolution %d resolves %s, not a promise", i, r.Promise)
		}
		if seen[r.Promise] {
			return v.fail("resolution %d resolves %s a second time", i, r.Promise)
		}
		seen[r.Promise] = true
		if err := v.known(r.Promise); err != nil {
			return err
		}
		if v.st != nil && !v.st.CanResolve(r.Promise) {
			return v.fail("Go does not decide %s, or has resolved it", r.Promise)
		}
		if _, err := v.capData(r.Data, fmt.Sprintf("resolution %d data", i)); err != nil {
			return err
		}
	}
	return nil
}

func (v validator) gc(refs []RRef, plus bool, allowed func(uint64) bool, notYet string) error {
	if len(refs) == 0 {
		return v.fail("empty reference list")
	}
	seen := map[RRef]bool{}
	for _, r := range refs {
		if r.Kind != Object {
			return v.fail("%s is not an object; the kernel collects objects only", r)
		}
		if r.Plus != plus {
			want := "the peer's (-)"
			if plus {
				want = "Go's own (+)"
			}
			return v.fail("%s is not %s", r, want)
		}
		if seen[r] {
			return v.fail("%s appears twice", r)
		}
		seen[r] = true
		if err := v.known(r); err != nil {
			return err
		}
		if !allowed(r.N) {
			return v.fail("%s is still reachable: %s", r, notYet)
		}
	}
	return nil
}

// capData checks one CapData (see ValidateOutgoing) and returns its value.
func (v validator) capData(cd smallcaps.CapData, name string) (any, error) {
	val, err := CheckCapData(cd)
	if err != nil {
		return nil, v.fail("%s: %v", name, err)
	}
	for _, s := range cd.Slots {
		if err := v.known(MustParseRRef(s)); err != nil {
			return nil, err
		}
	}
	return val, nil
}

// CheckCapData checks that cd is what an endpoint may send to a kernel:
// canonical smallcaps, RRef slots, "$i" naming objects and "&i" promises,
// and ifaces a vat accepts. It returns the decoded value.
func CheckCapData(cd smallcaps.CapData) (any, error) {
	val, err := smallcaps.Decode(cd)
	if err != nil {
		return nil, err
	}
	again, err := smallcaps.Encode(val)
	if err != nil {
		return nil, err
	}
	if again.Body != cd.Body || len(again.Slots) != len(cd.Slots) {
		return nil, fmt.Errorf("not canonical smallcaps: %s would be written %s", truncate(cd.Body), truncate(again.Body))
	}
	for i := range cd.Slots {
		if again.Slots[i] != cd.Slots[i] {
			return nil, fmt.Errorf("not canonical smallcaps: slot %d is %s, would be %s", i, cd.Slots[i], again.Slots[i])
		}
	}
	for _, s := range cd.Slots {
		if _, err := ParseRRef(s); err != nil {
			return nil, fmt.Errorf("slot: %w", err)
		}
	}
	var bad error
	walkRefs(val, func(ref any) {
		if bad != nil {
			return
		}
		switch r := ref.(type) {
		case smallcaps.Remotable:
			if MustParseRRef(r.Slot).Kind != Object {
				bad = fmt.Errorf("remotable slot %s is not an object reference", r.Slot)
			} else if !vatIface(r.Iface) {
				bad = fmt.Errorf("remotable %s has iface %q; a vat accepts only Remotable, \"Alleged: …\" or \"DebugName: …\"", r.Slot, r.Iface)
			}
		case smallcaps.Promise:
			if MustParseRRef(r.Slot).Kind != Promise {
				bad = fmt.Errorf("promise slot %s is not a promise reference", r.Slot)
			}
		}
	})
	return val, bad
}

func vatIface(iface string) bool {
	return iface == "" || iface == "Remotable" || strings.HasPrefix(iface, "Alleged: ") || strings.HasPrefix(iface, "DebugName: ")
}

// walkRefs calls f on every Remotable and Promise in v.
func walkRefs(v any, f func(any)) {
	switch x := v.(type) {
	case smallcaps.Remotable, smallcaps.Promise:
		f(x)
	case []any:
		for _, e := range x {
			walkRefs(e, f)
		}
	case smallcaps.Record:
		for _, e := range x {
			walkRefs(e.Value, f)
		}
	case *smallcaps.Error:
		for _, e := range x.Extra {
			walkRefs(e.Value, f)
		}
	case smallcaps.Tagged:
		walkRefs(x.Payload, f)
	}
}
