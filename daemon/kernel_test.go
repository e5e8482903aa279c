package daemon

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The kernel ops end to end: a stdio daemon exports a handler; an API
// daemon redeems its URL and calls it; the calls arrive as call events
// and are answered by resolve ops (values, a bigint, a record with a
// special key, an object passed and returned, a rejection); then the
// stdio daemon redeems the API daemon's object and calls it (answers
// come when the peer answered).
func TestKernelOps(t *testing.T) {
	oa := testOptions(t)
	oa.Kernel = true
	a, _ := startStdio(t, oa)
	b, tok := apiDaemon(t, func(o *Options) { o.Kernel = true })
	auth := []string{"Authorization: Bearer " + tok, "Content-Type: application/json"}
	post := func(path, body string) (int, map[string]any) {
		t.Helper()
		code, out, _ := call(t, "POST", b.APIURL()+path, body, auth...)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%s: %s", path, out)
		}
		return code, m
	}

	a.send(`{"op":"export","id":1,"name":"greeter","iface":"Greeter"}`)
	ex := a.next("exported", 5*time.Second)
	url, _ := ex["url"].(string)
	if ex["object"] != "obj:greeter" || !strings.HasPrefix(url, "ocap:") {
		t.Fatalf("exported: %v", ex)
	}
	code, red := post("/v1/redeem", `{"url":"`+url+","+directAddr(t, a.Daemon)+`"}`)
	ref, _ := red["ref"].(string)
	if code != 200 || red["event"] != "redeemed" || ref == "" {
		t.Fatalf("redeem: %d %v", code, red)
	}
	// B exports a callback object to pass as an argument.
	if code, m := post("/v1/export", `{"name":"cb"}`); code != 200 || m["object"] != "obj:cb" {
		t.Fatalf("export cb: %d %v", code, m)
	}

	type answer struct {
		code int
		m    map[string]any
	}
	callB := func(body string) chan answer {
		ch := make(chan answer, 1)
		go func() { c, m := post("/v1/call", body); ch <- answer{c, m} }()
		return ch
	}
	args := `[{"@bigint":"-12345678901234567890"},{"!k":"#v","o":{"@ref":"obj:cb"}},"!bang"]`
	res := callB(`{"ref":"` + ref + `","method":"greet","args":` + args + `}`)
	ev := a.next("call", 10*time.Second)
	if ev["object"] != "obj:greeter" || ev["method"] != "greet" || ev["from"] != b.Node().PeerID().String() {
		t.Fatalf("call event %v", ev)
	}
	got, _ := json.Marshal(ev["args"])
	gotArgs := string(got)
	if !strings.Contains(gotArgs, `{"@bigint":"-12345678901234567890"}`) || !strings.Contains(gotArgs, `"!k":"#v"`) ||
		!strings.Contains(gotArgs, `"!bang"`) || !strings.Contains(gotArgs, `"o":{"@ref":"ref:`) {
		t.Fatalf("call args %s", gotArgs)
	}
	cbRef := ev["args"].([]any)[1].(map[string]any)["o"].(map[string]any)["@ref"].(string)
	a.send(`{"op":"resolve","id":2,"call":"` + ev["call"].(string) + `","value":{"hello":"world","back":{"@ref":"` + cbRef + `"},"n":{"@bigint":"7"}}}`)
	if m := a.next("resolved", 5*time.Second); m["call"] != ev["call"] {
		t.Fatalf("resolved %v", m)
	}
	r := <-res
	val, _ := json.Marshal(r.m["value"])
	if r.code != 200 || r.m["event"] != "result" || string(val) != `{"back":{"@ref":"obj:cb"},"hello":"world","n":{"@bigint":"7"}}` {
		t.Fatalf("call result %d %v (%s)", r.code, r.m, val)
	}
	// A rejection.
	res = callB(`{"ref":"` + ref + `","method":"fail"}`)
	ev = a.next("call", 10*time.Second)
	a.send(`{"op":"resolve","call":"` + ev["call"].(string) + `","error":"no thanks"}`)
	r = <-res
	if r.code != 200 || r.m["event"] != "rejected" || !strings.Contains(r.m["error"].(string), "no thanks") {
		t.Fatalf("rejection %d %v", r.code, r.m)
	}
	// Resolving twice is refused.
	a.send(`{"op":"resolve","id":9,"call":"` + ev["call"].(string) + `","value":1}`)
	if m := a.next("error", 5*time.Second); m["field"] != "call" {
		t.Fatalf("second resolve %v", m)
	}

	// The stdio daemon redeems B's object and calls it; its calls come
	// to B's event log, answered through the API.
	_, ex2 := post("/v1/export", `{"name":"svc"}`)
	a.send(`{"op":"redeem","id":"r","url":"` + ex2["url"].(string) + "," + directAddr(t, b) + `"}`)
	rd := a.next("redeemed", 10*time.Second)
	a.send(`{"op":"call","id":"c","ref":"` + rd["ref"].(string) + `","method":"ping","args":[1.5]}`)
	var callID string
	testutilWait(t, func() bool {
		evs, _ := b.Node().Store().Events(0, 1000)
		for _, e := range evs {
			var m map[string]any
			// The log keeps a binary header (a timestamp, whose bytes may be
			// '{') before the event's JSON.
			if json.Unmarshal(decodeStored(e, time.Time{}).Data, &m) == nil && m["event"] == "call" && m["object"] == "obj:svc" {
				callID = m["call"].(string)
				return true
			}
		}
		return false
	})
	if code, m := post("/v1/resolve", `{"call":"`+callID+`","value":"pong"}`); code != 200 {
		t.Fatalf("resolve via API: %d %v", code, m)
	}
	if m := a.next("result", 10*time.Second); m["id"] != "c" || m["value"] != "pong" {
		t.Fatalf("stdio call result %v", m)
	}
}

// Without --kernel the kernel ops are refused.
func TestKernelOpsNeedKernel(t *testing.T) {
	d, tok := apiDaemon(t, nil)
	code, out, _ := call(t, "POST", d.APIURL()+"/v1/redeem", `{"url":"ocap:zX@12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}`,
		"Authorization: Bearer "+tok, "Content-Type: application/json")
	if code != 404 || !strings.Contains(out, "--kernel") {
		t.Fatalf("%d %s", code, out)
	}
}

func testutilWait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// A daemon that restarts on its data directory keeps its exported
// objects: a peer's existing reference reaches the object again, and the
// call arrives as an event before the client has exported anything.
func TestKernelObjectsSurviveRestart(t *testing.T) {
	ob := testOptions(t)
	ob.API, ob.Kernel = "127.0.0.1:0", true
	b, err := Start(t.Context(), ob)
	if err != nil {
		t.Fatal(err)
	}
	tokB, _ := LoadToken(ob.Node.Dir)
	a, tokA := apiDaemon(t, func(o *Options) { o.Kernel = true })
	post := func(d *Daemon, tok, path, body string) (int, map[string]any) {
		t.Helper()
		code, out, _ := call(t, "POST", d.APIURL()+path, body, "Authorization: Bearer "+tok, "Content-Type: application/json")
		var m map[string]any
		json.Unmarshal([]byte(out), &m)
		return code, m
	}
	_, ex := post(b, tokB, "/v1/export", `{"name":"svc"}`)
	addr := directAddr(t, b)
	_, red := post(a, tokA, "/v1/redeem", `{"url":"`+ex["url"].(string)+","+addr+`"}`)
	ref, _ := red["ref"].(string)
	if ref == "" {
		t.Fatalf("redeem: %v", red)
	}
	if err := b.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	ob.Node.Transport.ListenAddrs = []string{addr[:strings.Index(addr, "/p2p/")]}
	ob.API = "127.0.0.1:0"
	b = startDaemon(t, ob)
	type answer struct {
		code int
		m    map[string]any
	}
	res := make(chan answer, 1)
	go func() { c, m := post(a, tokA, "/v1/call", `{"ref":"`+ref+`","method":"ping"}`); res <- answer{c, m} }()
	var callID string
	testutilWait(t, func() bool {
		evs, _ := b.Node().Store().Events(0, 1000)
		for _, e := range evs {
			var m map[string]any
			if json.Unmarshal(decodeStored(e, time.Time{}).Data, &m) == nil && m["event"] == "call" {
				callID = m["call"].(string)
				return true
			}
		}
		return false
	})
	if code, m := post(b, tokB, "/v1/resolve", `{"call":"`+callID+`","value":"pong after restart"}`); code != 200 {
		t.Fatalf("resolve: %d %v", code, m)
	}
	if r := <-res; r.code != 200 || r.m["value"] != "pong after restart" {
		t.Fatalf("call after restart: %d %v", r.code, r.m)
	}
}
