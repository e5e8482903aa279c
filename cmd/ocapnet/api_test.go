package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func apiGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func apiPost(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sseEvents reads server-sent events until n data lines arrived.
func sseEvents(t *testing.T, url, token, lastID string, n int) (ids []string, data []map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	for len(data) < n && sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "id: "):
			ids = append(ids, strings.TrimPrefix(l, "id: "))
		case strings.HasPrefix(l, "data: "):
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &m); err != nil {
				t.Fatalf("event data %q: %v", l, err)
			}
			data = append(data, m)
		}
	}
	if len(data) < n {
		t.Fatalf("got %d events, want %d: %v", len(data), n, sc.Err())
	}
	return ids, data
}

// The HTTP API: token required, send, durable event stream with
// Last-Event-ID, acknowledgement, peers, status page, metrics; and the thin
// clients.
func TestPeerAPI(t *testing.T) {
	relayAddr := startRelayProc(t)
	dir := t.TempDir()
	a := startProc(t, "peer", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	ready := a.next(t, "ready", 10*time.Second)
	base := "http://" + ready["api"].(string)
	aID := ready["peerId"].(string)
	tokB, err := os.ReadFile(filepath.Join(dir, "api-token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "api-token")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode())
	}
	tok := strings.TrimSpace(string(tokB))
	var aDirect string
	for _, x := range ready["addrs"].([]any) {
		aDirect = x.(string)
	}

	b, bReady := startPeerProc(t, relayAddr)
	bID := bReady["peerId"].(string)

	if code, _ := apiGet(t, base+"/v1/peers", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := apiGet(t, base+"/v1/peers", "wrong"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if code, body := apiPost(t, base+"/v1/send", tok, `{"to":`); code != 400 || !strings.Contains(body, "error") {
		t.Fatalf("bad JSON: %d %s", code, body)
	}
	if code, body := apiPost(t, base+"/v1/send", tok, `{"to":"x","method":"m"}`); code != 400 {
		t.Fatalf("bad peer: %d %s", code, body)
	}
	code, body := apiPost(t, base+"/v1/send", tok, fmt.Sprintf(`{"id":"h1","to":%q,"method":"m","params":[1],"hints":[%q]}`, bID, relayAddr+"/p2p-circuit/p2p/"+bID))
	if code != 200 || !strings.Contains(body, `"seq":1`) {
		t.Fatalf("send: %d %s", code, body)
	}
	if m := b.next(t, "message", 15*time.Second); m["from"] != aID {
		t.Fatalf("b got %v", m)
	}

	// B sends to A: the message waits in A's durable event log.
	b.send(t, fmt.Sprintf(`{"op":"send","to":%q,"method":"hello","params":"there","hints":[%q]}`, aID, aDirect))
	b.next(t, "acked", 15*time.Second) // A acknowledged only after storing it
	ids, evs := sseEvents(t, base+"/v1/events", tok, "", 1)
	msgID := ""
	for {
		for i, e := range evs {
			if e["event"] == "message" && e["method"] == "hello" {
				msgID = ids[i]
			}
		}
		if msgID != "" {
			break
		}
		ids, evs = sseEvents(t, base+"/v1/events", tok, ids[len(ids)-1], 1)
	}
	// A client that reconnects with Last-Event-ID just before it gets it again.
	var prev uint64
	fmt.Sscan(msgID, &prev)
	ids2, evs2 := sseEvents(t, base+"/v1/events", tok, fmt.Sprint(prev-1), 1)
	if ids2[0] != msgID || evs2[0]["method"] != "hello" || evs2[0]["from"] != bID {
		t.Fatalf("replay: %v %v", ids2, evs2)
	}
	if code, body := apiPost(t, base+"/v1/events/ack", tok, `{"upTo":`+msgID+`}`); code != 200 || !strings.Contains(body, "deleted") {
		t.Fatalf("ack: %d %s", code, body)
	}

	if code, body := apiGet(t, base+"/v1/peers", tok); code != 200 || !strings.Contains(body, bID) {
		t.Fatalf("peers: %d %s", code, body)
	}
	if code, body := apiGet(t, base+"/", ""); code != 200 || !strings.Contains(body, "ocapnet peer") {
		t.Fatalf("status page: %d", code)
	}
	if code, body := apiGet(t, base+"/metrics", tok); code != 200 || !strings.Contains(body, "ocapnet_transport_") {
		t.Fatalf("metrics: %d", code)
	}

	// Thin clients find the API through the data directory.
	out, err := exec.Command(ocapnetBinary(t), "send", "--data", dir, "--to", bID, "--method", "m", "--params", "[3]", "--id", `"c1"`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"id":"c1"`) || !strings.Contains(string(out), `"seq":2`) {
		t.Fatalf("ocapnet send: %v %s", err, out)
	}
	if m := b.next(t, "message", 10*time.Second); m["seq"] != 2.0 {
		t.Fatalf("b got %v", m)
	}
	out, err = exec.Command(ocapnetBinary(t), "peers", "--data", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), bID) {
		t.Fatalf("ocapnet peers: %v %s", err, out)
	}
	out, err = exec.Command(ocapnetBinary(t), "events", "--data", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"eventId":`) {
		t.Fatalf("ocapnet events: %v %s", err, out)
	}
	out, err = exec.Command(ocapnetBinary(t), "peers", "--data", dir, "--json").Output()
	var peersJSON struct{ Peers []map[string]any }
	if err != nil || json.Unmarshal(out, &peersJSON) != nil || len(peersJSON.Peers) == 0 || !strings.Contains(string(out), "\n  ") {
		t.Fatalf("ocapnet peers --json: %v %s", err, out)
	}
	out, err = exec.Command(ocapnetBinary(t), "peers", "--data", dir, "--table").Output()
	if err != nil || !regexp.MustCompile(`(?m)^PEER +STATE +FOR +NEXT RETRY +SENT`).Match(out) || !regexp.MustCompile(bID+` +connected +\S+ +- +2 `).Match(out) {
		t.Fatalf("ocapnet peers --table: %v\n%s", err, out)
	}
	// send --wait: 0 once acknowledged; 3 when not within the timeout.
	cmd := exec.Command(ocapnetBinary(t), "send", "--to", bID, "--method", "m", "--id", `"w1"`, "--wait", "--timeout", "20s")
	cmd.Env = append(os.Environ(), "OCAPNET_SEND_DATA="+dir)
	out, err = cmd.Output()
	if err != nil || !strings.Contains(string(out), `"event":"acked"`) || !strings.Contains(string(out), `"id":"w1"`) {
		t.Fatalf("ocapnet send --wait: %v %s", err, out)
	}
	dead := "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	out, err = exec.Command(ocapnetBinary(t), "send", "--data", dir, "--to", dead, "--method", "m", "--hint", "/ip4/127.0.0.1/tcp/1/p2p/"+dead,
		"--wait", "--timeout", "1s").CombinedOutput()
	if exitCode(err) != 3 || !strings.Contains(string(out), "not acknowledged within 1s") {
		t.Fatalf("ocapnet send --wait to an unreachable peer: exit %d %s", exitCode(err), out)
	}
	out, err = exec.Command(ocapnetBinary(t), "login", "--data", dir).Output()
	if err != nil || !regexp.MustCompile(`^http://127\.0\.0\.1:\d+/login\?code=[0-9a-f]{64}\n$`).Match(out) {
		t.Fatalf("ocapnet login: %v %q", err, out)
	}
	if code, _ := apiGet(t, strings.TrimSpace(string(out)), ""); code != 200 {
		t.Fatalf("following the login link: %d", code)
	}
	out, err = exec.Command(ocapnetBinary(t), "peers", "--data", dir, "--token", "wrong").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "401") {
		t.Fatalf("ocapnet peers with a wrong token: %v %s", err, out)
	}
	// A second daemon on the same directory fails fast, naming it.
	out, err = exec.Command(ocapnetBinary(t), "peer", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), dir) {
		t.Fatalf("second daemon: %v %s", err, out)
	}
	if code := a.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
