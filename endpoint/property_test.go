package endpoint

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
)

// jsModel is an independent model of what the JavaScript kernel accepts
// from Go (kp §2–§3.7), built only from the frames exchanged: it does not
// look at the endpoint's tables.
type jsModel struct {
	jsObjs, jsProms map[uint64]bool // JS allocations Go may name (ro-M / rp-M)
	goDecides       map[uint64]bool // JS results Go must resolve once (rp-K)
	goObjs          map[uint64]bool // Go objects JS has seen (ro+N)
	goProms         map[uint64]bool // Go promises JS has seen in data, unresolved
	goUsed          map[uint64]bool // every rp+N Go ever wrote
	goRetired       map[uint64]bool // Go objects JS retired
	redeemKeys      map[string]bool // JS redemptions waiting for Go
	goResults       map[uint64]bool // Go's results JS has to answer
	nextObj, nextP  uint64          // JS's counters
}

func newJSModel() *jsModel {
	return &jsModel{jsObjs: map[uint64]bool{}, jsProms: map[uint64]bool{}, goDecides: map[uint64]bool{},
		goObjs: map[uint64]bool{}, goProms: map[uint64]bool{}, goUsed: map[uint64]bool{}, goRetired: map[uint64]bool{},
		redeemKeys: map[string]bool{}, goResults: map[uint64]bool{}}
}

// slots checks the slots of Go's CapData and learns Go's new references.
func (m *jsModel) slots(cd smallcaps.CapData) error {
	if _, err := kernelwire.CheckCapData(cd); err != nil {
		return err
	}
	for _, s := range cd.Slots {
		r := kernelwire.MustParseRRef(s)
		switch {
		case !r.Plus && r.Kind == kernelwire.Object && !m.jsObjs[r.N]:
			return fmt.Errorf("%s is not an export reference", s)
		case !r.Plus && r.Kind == kernelwire.Promise && !m.jsProms[r.N]:
			return fmt.Errorf("%s is not an export reference", s)
		case r.Plus && r.Kind == kernelwire.Object:
			if m.goRetired[r.N] {
				return fmt.Errorf("%s reuses a retired number", s)
			}
			m.goObjs[r.N] = true
		case r.Plus && r.Kind == kernelwire.Promise:
			if !m.goProms[r.N] && m.goUsed[r.N] {
				return fmt.Errorf("%s: a promise already used or resolved, sent as new", s)
			}
			m.goUsed[r.N] = true
			m.goProms[r.N] = true
		}
	}
	return nil
}

// accept applies a frame Go sent, or says why JS would throw on it.
func (m *jsModel) accept(o node.Outgoing) error {
	msg, err := kernelwire.Decode(o.Method, o.Params)
	if err != nil {
		return err
	}
	switch x := msg.(type) {
	case *kernelwire.Send:
		if x.Target.Plus || (x.Target.Kind == kernelwire.Object && !m.jsObjs[x.Target.N]) || (x.Target.Kind == kernelwire.Promise && !m.jsProms[x.Target.N]) {
			return fmt.Errorf("target %s", x.Target)
		}
		if x.Result == nil || !x.Result.Plus || x.Result.Kind != kernelwire.Promise || m.goUsed[x.Result.N] {
			return fmt.Errorf("message result must be a fresh string, got %v", x.Result)
		}
		m.goUsed[x.Result.N] = true
		m.goResults[x.Result.N] = true
		return m.slots(x.Methargs)
	case *kernelwire.Notify:
		for _, r := range x.Resolutions {
			p := r.Promise
			switch {
			case !p.Plus && m.goDecides[p.N]:
				delete(m.goDecides, p.N)
			case p.Plus && m.goProms[p.N]:
				delete(m.goProms, p.N)
			default:
				return fmt.Errorf("%s: already resolved or not Go's to resolve", p)
			}
			if err := m.slots(r.Data); err != nil {
				return err
			}
		}
		return nil
	case *kernelwire.RedeemURLReply:
		if !m.redeemKeys[x.ReplyKey] {
			return fmt.Errorf("unknown URL redemption reply key %s", x.ReplyKey)
		}
		delete(m.redeemKeys, x.ReplyKey)
		if x.OK {
			if !x.Ref.Plus || m.goRetired[x.Ref.N] {
				return fmt.Errorf("reply ref %s", x.Ref)
			}
			m.goObjs[x.Ref.N] = true
		}
		return nil
	case *kernelwire.RedeemURL:
		return nil
	}
	return fmt.Errorf("Go sent %s, which it never should", msg.Kind())
}

// propertyRun drives an endpoint with random JS frames and Go calls and
// checks every frame Go sends against the model.
func propertyRun(t *testing.T, r *rand.Rand, ops int) {
	ep, l := transcriptEP(t, t.TempDir())
	ctx := ctxT(t)
	m := newJSModel()
	seq := uint64(0)
	send := func(method, params string) {
		seq++
		if err := ep.onNodeMessage(node.Message{From: mustPeer(t, jsPeerID), Seq: seq, Method: method, Params: []byte(params)}); err != nil {
			t.Fatalf("endpoint refused %s %s: %v", method, params, err)
		}
	}
	check := func(o node.Outgoing) {
		if err := m.accept(o); err != nil {
			t.Fatalf("Go sent a frame JS would throw on: %s %s: %v", o.Method, o.Params, err)
		}
	}
	// wait takes Go's frames until done says the expected one came.
	wait := func(what string, done func(node.Outgoing) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case o := <-l.outgoing():
				check(o)
				if done(o) {
					return
				}
			case <-deadline:
				t.Fatalf("no frame for %s", what)
			}
		}
	}
	var pending []*Promise // local promises not yet settled
	var refs []*Ref        // JS objects Go received
	svc := Named("Svc", Methods{
		"echo":  func(_ context.Context, a []any) (any, error) { return a, nil },
		"boom":  func(context.Context, []any) (any, error) { return nil, fmt.Errorf("boom") },
		"panic": func(context.Context, []any) (any, error) { panic("p") },
		"mk": func(context.Context, []any) (any, error) {
			return Methods{"x": func(context.Context, []any) (any, error) { return 1, nil }}, nil
		},
		"prom": func(context.Context, []any) (any, error) {
			p := NewPromise()
			pending = append(pending, p)
			return p, nil
		},
	})
	url, err := ep.Export(svc)
	if err != nil {
		t.Fatal(err)
	}
	m.redeemKeys["r0"] = true
	send("redeemURL", `["`+url+`","r0"]`)
	wait("the svc redemption", func(o node.Outgoing) bool { return o.Method == "redeemURLReply" })
	// Go redeems a JS greeter.
	rc := make(chan *Ref, 1)
	go func() { ref, _ := ep.Redeem(ctx, "ocap:zG@"+jsPeerID); rc <- ref }()
	wait("Go's redemption", func(o node.Outgoing) bool { return o.Method == "redeemURL" })
	m.nextObj++
	m.jsObjs[m.nextObj] = true
	send("redeemURLReply", fmt.Sprintf(`[true,"1","ro+%d"]`, m.nextObj))
	refs = append(refs, <-rc)

	// jsValue writes a random argument as JS would: new or known JS refs,
	// Go objects JS knows, plain data with special strings.
	jsValue := func() (string, []string) {
		switch r.IntN(6) {
		case 0:
			m.nextObj++
			m.jsObjs[m.nextObj] = true
			return `"$0.Alleged: js"`, []string{fmt.Sprintf("ro+%d", m.nextObj)}
		case 1:
			m.nextP++
			m.jsProms[m.nextP] = true
			return `"&0"`, []string{fmt.Sprintf("rp+%d", m.nextP)}
		case 2:
			for n := range m.goObjs {
				return `"$0"`, []string{fmt.Sprintf("ro-%d", n)}
			}
		case 3:
			return `{"!!x":"+12","a":["!#y",null]}`, nil
		case 4:
			return `"$0"`, []string{"ro-99999"} // a ref JS does not have: Go must not poison back
		}
		return `"#NaN"`, nil
	}
	for range ops {
		switch op := r.IntN(10); {
		case op < 4: // JS calls svc
			method := []string{"echo", "boom", "panic", "mk", "prom", "nope"}[r.IntN(6)]
			arg, slots := jsValue()
			m.nextP++
			k := m.nextP
			m.goDecides[k] = true
			body := fmt.Sprintf(`#[%q,[%s]]`, method, arg)
			cd := smallcaps.CapData{Body: body, Slots: append([]string{}, slots...)}
			params := fmt.Sprintf(`["message","ro-1",{"methargs":%s,"result":"rp+%d"}]`, cd.AppendJSON(nil), k)
			send("deliver", params)
			wait("the result of "+method, func(o node.Outgoing) bool {
				return o.Method == "deliver" && strings.Contains(string(o.Params), fmt.Sprintf(`["rp-%d",`, k))
			})
		case op < 6: // Go calls a JS object
			target := refs[r.IntN(len(refs))]
			var arg any
			switch r.IntN(4) {
			case 0:
				arg = refs[r.IntN(len(refs))]
			case 1:
				arg = svc
			case 2:
				p := NewPromise()
				pending = append(pending, p)
				arg = p
			default:
				arg = map[string]any{"#k": "!v", "n": int64(7)}
			}
			res, err := target.Send(ctx, "go", arg)
			if err != nil {
				continue // a stale reference, refused before sending
			}
			var rn uint64
			wait("Go's message", func(o node.Outgoing) bool {
				msg, _ := kernelwire.Decode(o.Method, o.Params)
				if s, ok := msg.(*kernelwire.Send); ok {
					rn = s.Result.N
					return true
				}
				return false
			})
			if r.IntN(3) > 0 {
				val, slots := jsValue()
				delete(m.goResults, rn)
				cd := smallcaps.CapData{Body: "#" + val, Slots: append([]string{}, slots...)}
				send("deliver", fmt.Sprintf(`["notify",[["rp-%d",%v,%s]]]`, rn, r.IntN(2) == 0, cd.AppendJSON(nil)))
				if v, err := res.Wait(ctx); err == nil {
					if ref, ok := v.(*Ref); ok {
						refs = append(refs, ref)
					}
				}
			}
		case op < 8: // a local promise settles
			if len(pending) == 0 {
				continue
			}
			i := r.IntN(len(pending))
			p := pending[i]
			pending = append(pending[:i], pending[i+1:]...)
			if r.IntN(2) == 0 {
				p.Resolve([]any{"done", svc})
			} else {
				p.Reject(fmt.Errorf("no"))
			}
		case op < 9: // JS echoes or GCs
			for n := range m.goObjs {
				send("deliver", fmt.Sprintf(`["dropExports",["ro+%d"]]`, n))
				if n != 1 && r.IntN(2) == 0 {
					send("deliver", fmt.Sprintf(`["retireExports",["ro+%d"]]`, n))
					delete(m.goObjs, n)
					m.goRetired[n] = true
				}
				break
			}
			send("deliver", `["bringOutYourDead"]`)
		default: // JS redeems svc again
			key := fmt.Sprintf("k%d", seq)
			m.redeemKeys[key] = true
			send("redeemURL", `["`+url+`","`+key+`"]`)
			wait("the redemption", func(o node.Outgoing) bool { return o.Method == "redeemURLReply" })
		}
	}
	// Settle the rest: each promise notifies once, checked by the model.
	for _, p := range pending {
		p.Resolve(1)
	}
	for len(m.goProms) > 0 {
		wait("the last resolutions", func(node.Outgoing) bool { return true })
	}
	quiet(t, l)
}

// TestNeverPoisons: whatever a JavaScript kernel sends and however Go code
// calls, every frame the endpoint sends is one the kernel accepts (kp
// §3.7, §10 MUST 5), judged by an independent model of the kernel.
func TestNeverPoisons(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			propertyRun(t, rand.New(rand.NewPCG(seed, 17)), 120)
		})
	}
}

// FuzzNeverPoisons is TestNeverPoisons with fuzzed seeds.
func FuzzNeverPoisons(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		propertyRun(t, rand.New(rand.NewPCG(a, b)), 60)
	})
}
