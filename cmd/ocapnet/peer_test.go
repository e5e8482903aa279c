package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func (p *proc) send(t *testing.T, line string) {
	t.Helper()
	if _, err := p.stdin.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
}

func startRelayProc(t *testing.T) string {
	t.Helper()
	r := startProc(t, "relay", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0")
	ready := r.next(t, "ready", 10*time.Second)
	return ready["addrs"].([]any)[0].(string)
}

func startPeerProc(t *testing.T, relayAddr string, extra ...string) (*proc, map[string]any) {
	t.Helper()
	args := append([]string{"peer", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", relayAddr, "--stdio"}, extra...)
	p := startProc(t, args...)
	ready := p.next(t, "", 10*time.Second) // the first line, whatever it is
	if ready["event"] != "ready" || ready["peerId"] == "" {
		t.Fatalf("first line: %v", ready)
	}
	return p, ready
}

// Two peer daemons exchange messages through a relay and directly, driven by
// JSON lines; bad lines get error events and the daemon keeps serving.
func TestPeerStdioThroughRelayAndDirect(t *testing.T) {
	relayAddr := startRelayProc(t)
	a, aReady := startPeerProc(t, relayAddr)
	b, bReady := startPeerProc(t, relayAddr)
	aID, bID := aReady["peerId"].(string), bReady["peerId"].(string)
	viaRelay := relayAddr + "/p2p-circuit/p2p/" + bID

	a.send(t, fmt.Sprintf(`{"op":"send","id":"x1","to":%q,"method":"deliver","params":["notify",[1]],"hints":[%q]}`, bID, viaRelay))
	if s := a.next(t, "sent", 10*time.Second); s["id"] != "x1" || s["seq"] != 1.0 || s["to"] != bID {
		t.Fatalf("sent: %v", s)
	}
	m := b.next(t, "message", 15*time.Second)
	if m["from"] != aID || m["seq"] != 1.0 || m["method"] != "deliver" || fmt.Sprint(m["params"]) != "[notify [1]]" || m["redelivery"] != false {
		t.Fatalf("message: %v", m)
	}
	if ack := a.next(t, "acked", 10*time.Second); ack["id"] != "x1" || ack["seq"] != 1.0 {
		t.Fatalf("acked: %v", ack)
	}
	a.send(t, `{"op":"peers","id":[1,2]}`)
	ps := a.next(t, "peers", 5*time.Second)
	if fmt.Sprint(ps["id"]) != "[1 2]" || !strings.Contains(fmt.Sprint(ps["peers"]), "p2p-circuit") {
		t.Fatalf("peers (want the link to B over the relay): %v", ps)
	}

	// Directly, the other way; the id comes back with its JSON type.
	var aDirect string
	for _, x := range aReady["addrs"].([]any) {
		if s := x.(string); !strings.Contains(s, "p2p-circuit") {
			aDirect = s
		}
	}
	b.send(t, fmt.Sprintf(`{"op":"send","id":42,"to":%q,"method":"m","params":{"k":"v"},"hints":[%q]}`, aID, aDirect))
	if s := b.next(t, "sent", 10*time.Second); s["id"] != 42.0 {
		t.Fatalf("sent: %v", s)
	}
	if m := a.next(t, "message", 10*time.Second); m["from"] != bID || fmt.Sprint(m["params"]) != "map[k:v]" {
		t.Fatalf("message: %v", m)
	}

	// Bad input: an error event each, and the daemon keeps serving.
	bad := []struct{ line, want string }{
		{`{"op":`, "malformed JSON"},
		{`{"op":"fly","id":"u"}`, "unknown op"},
		{`{"op":"send","id":"p","to":"nope","method":"m"}`, "invalid peer ID"},
		{fmt.Sprintf(`{"op":"send","id":"big","to":%q,"method":"m","params":"%s"}`, bID, strings.Repeat("x", 2<<20)), "too large"},
		{fmt.Sprintf(`{"op":"send","id":"huge","to":%q,"method":"m","params":"%s"}`, bID, strings.Repeat("x", 5<<20)), "longer than"},
		{`{"op":"resend","peer":"` + bID + `"}`, "no parked messages"},
	}
	for _, c := range bad {
		a.send(t, c.line)
		e := a.next(t, "error", 10*time.Second)
		if !strings.Contains(fmt.Sprint(e["error"]), c.want) {
			t.Fatalf("line %.60q: error %v, want %q", c.line, e, c.want)
		}
	}
	a.send(t, fmt.Sprintf(`{"op":"send","id":"after","to":%q,"method":"m","params":[2]}`, bID))
	if s := a.next(t, "sent", 10*time.Second); s["id"] != "after" || s["seq"] != 2.0 {
		t.Fatalf("send after bad lines: %v", s)
	}
	if m := b.next(t, "message", 10*time.Second); m["seq"] != 2.0 {
		t.Fatalf("message after bad lines: %v", m)
	}
	if code := a.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestPeerBadUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"peer", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"peer", "--data", "", "--seed", "c8", "--mnemonic", "x"}, 2, "mutually exclusive"},
		{[]string{"peer", "--seed", "c8", "--listen", "/ip4/0.0.0.0/tcp/0"}, 1, "--insecure-seed"},
		{[]string{"peer", "--data", "DIR", "--listen", "garbage"}, 1, "garbage"},
		{[]string{"peer", "--data", "DIR", "--api", "0.0.0.0:0"}, 1, "not a loopback"},
	} {
		args := c.args
		for i, a := range args {
			if a == "DIR" {
				args[i] = t.TempDir()
			}
		}
		code, _, stderr := runCmd(args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", args, code, stderr, c.code, c.want)
		}
	}
}
