package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	itest "github.com/ocapnet/ocapnet/internal/testutil"
	"github.com/ocapnet/ocapnet/store"
)

// Batches over HTTP, as a JSON array or NDJSON: one group commit, answers
// in order; concurrent single sends all get their sequence numbers.
func TestAPIBatchSend(t *testing.T) {
	a, tok := apiDaemon(t, nil)
	b, _ := startStdio(t, testOptions(t))
	bID, hint := b.Node().PeerID().String(), directAddr(t, b.Daemon)
	base := "http://" + a.APIAddr()
	auth := "Authorization: Bearer " + tok
	var items []string
	for i := 1; i <= 100; i++ {
		items = append(items, fmt.Sprintf(`{"id":%d,"to":%q,"method":"m","params":[%d],"hints":[%q]}`, i, bID, i, hint))
	}
	code, body, _ := call(t, "POST", base+"/v1/send", "["+strings.Join(items, ",")+"]", auth, "Content-Type: application/json")
	var arr []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &arr) != nil || len(arr) != 100 {
		t.Fatalf("array batch: %d %.300s", code, body)
	}
	for i, m := range arr {
		if m["event"] != "sent" || m["seq"] != float64(i+1) || m["id"] != float64(i+1) {
			t.Fatalf("item %d: %v", i, m)
		}
	}
	code, body, h := call(t, "POST", base+"/v1/send", strings.Join(items[:3], "\n")+"\n", auth, "Content-Type: application/x-ndjson")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if code != 200 || h.Get("Content-Type") != "application/x-ndjson" || len(lines) != 3 || !strings.Contains(lines[2], `"seq":103`) {
		t.Fatalf("ndjson batch: %d %v %s", code, h, body)
	}
	// A refusal by the node is that item's answer; the others are sent.
	closed := randomPeer(t)
	if code, body, _ := call(t, "POST", base+"/v1/peers/"+closed+"/close", "", auth, "Content-Type: application/json"); code != 200 {
		t.Fatalf("close: %d %s", code, body)
	}
	code, body, _ = call(t, "POST", base+"/v1/send", fmt.Sprintf(`[{"to":%q,"method":"m"},{"id":"x","to":%q,"method":"m"}]`, bID, closed),
		auth, "Content-Type: application/json")
	if code != 200 || !strings.Contains(body, `"seq":104`) || !strings.Contains(body, `{"event":"error","id":"x","error":`) || !strings.Contains(body, `"item":1`) {
		t.Fatalf("batch with a closed peer: %d %s", code, body)
	}
	var wg sync.WaitGroup
	seqs := make(chan float64, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, body, _ := call(t, "POST", base+"/v1/send", fmt.Sprintf(`{"id":"c%d","to":%q,"method":"m"}`, i, bID), auth, "Content-Type: application/json")
			var m map[string]any
			json.Unmarshal([]byte(body), &m)
			seqs <- m["seq"].(float64)
		}()
	}
	wg.Wait()
	close(seqs)
	got := map[float64]bool{}
	for s := range seqs {
		got[s] = true
	}
	for s := 105.0; s <= 154; s++ {
		if !got[s] {
			t.Fatalf("concurrent sends: seq %v missing (%v)", s, got)
		}
	}
	for i := 1; i <= 154; i++ {
		if m := b.next("message", 20*time.Second); m["seq"] != float64(i) {
			t.Fatalf("message %d: %v", i, m)
		}
	}
}

// ?wait=acked answers once the peer acknowledged (200), or says it was not
// acknowledged in time (202, still queued).
func TestAPISendWait(t *testing.T) {
	a, tok := apiDaemon(t, nil)
	b, _ := startStdio(t, testOptions(t))
	base := "http://" + a.APIAddr()
	auth := "Authorization: Bearer " + tok
	body := fmt.Sprintf(`{"id":"w","to":%q,"method":"m","hints":[%q]}`, b.Node().PeerID(), directAddr(t, b.Daemon))
	code, resp, _ := call(t, "POST", base+"/v1/send?wait=acked&timeout=20s", body, auth, "Content-Type: application/json")
	if code != 200 || !strings.Contains(resp, `"event":"acked"`) || !strings.Contains(resp, `"id":"w"`) {
		t.Fatalf("wait for a reachable peer: %d %s", code, resp)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dead := randomPeer(t)
	start := time.Now()
	code, resp, _ = call(t, "POST", base+"/v1/send?wait=acked&timeout=1s",
		fmt.Sprintf(`{"to":%q,"method":"m","hints":["/ip4/127.0.0.1/tcp/%d/p2p/%s"]}`, dead, port, dead), auth, "Content-Type: application/json")
	if code != 202 || !strings.Contains(resp, "not acknowledged within 1s") || time.Since(start) > 10*time.Second {
		t.Fatalf("wait for an unreachable peer: %d %s", code, resp)
	}
	for _, q := range []string{"wait=yes", "wait=acked&timeout=forever", "wait=acked&timeout=11m"} {
		if code, _, _ := call(t, "POST", base+"/v1/send?"+q, body, auth, "Content-Type: application/json"); code != 400 {
			t.Errorf("%s: %d", q, code)
		}
	}
	if code, _, _ := call(t, "POST", base+"/v1/send?wait=acked", "["+body+"]", auth, "Content-Type: application/json"); code != 400 {
		t.Errorf("wait on a batch: %d", code)
	}
}

// The API daemon hands received messages to the node without waiting for
// each one's commit to the event log: with its store's writer held, a
// peer's messages are still taken from the read loop; once released, all
// are in the event log and acknowledged.
func TestAPIReceiveDoesNotWaitForEachCommit(t *testing.T) {
	b, _ := apiDaemon(t, nil)
	a, _ := startStdio(t, testOptions(t))
	bID, hint := b.Node().PeerID().String(), directAddr(t, b)
	aID := a.Node().PeerID()
	a.send(fmt.Sprintf(`{"op":"send","id":0,"to":%q,"method":"m","params":[0],"hints":[%q]}`, bID, hint))
	a.next("acked", 20*time.Second)
	st := b.Node().Store()
	started, release := make(chan struct{}), make(chan struct{})
	wedged := make(chan error, 1)
	go func() {
		wedged <- st.Update(func(*store.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	const n = 20
	var lines []string
	for i := 1; i <= n; i++ {
		lines = append(lines, fmt.Sprintf(`{"op":"send","id":%d,"to":%q,"method":"m","params":[%d]}`, i, bID, i))
	}
	a.send(lines...)
	itest.WaitFor(t, 20*time.Second, "the messages taken while the store is held", func() bool {
		ps, _, err := b.Node().Peer(aID)
		return err == nil && ps.Delivered == n+1
	})
	close(release)
	released = true
	if err := <-wedged; err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if m := a.next("acked", 20*time.Second); m["seq"] != float64(i+1) {
			t.Fatalf("acked %d: %v", i, m)
		}
	}
	evs, err := b.elog.read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range evs {
		if strings.Contains(string(e.Data), `"event":"message"`) {
			got++
		}
	}
	if got != n+1 {
		t.Fatalf("%d messages in the event log, want %d", got, n+1)
	}
}

// Concurrent POST /v1/send requests share commits: with the store's writer
// held, 50 single sends queue, and one commit makes them durable.
func TestAPIConcurrentSendsShareCommits(t *testing.T) {
	a, tok := apiDaemon(t, nil)
	base := "http://" + a.APIAddr()
	auth := "Authorization: Bearer " + tok
	away := randomPeer(t) // unreachable: no handshake takes its locks meanwhile
	st := a.Node().Store()
	started, release := make(chan struct{}), make(chan struct{})
	wedged := make(chan error, 1)
	go func() {
		wedged <- st.Update(func(*store.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	commits := st.Stats().Commits
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := call(t, "POST", base+"/v1/send", fmt.Sprintf(`{"id":"c%d","to":%q,"method":"m"}`, i, away), auth, "Content-Type: application/json")
			codes <- code
		}()
	}
	itest.WaitFor(t, 20*time.Second, "50 sends queued", func() bool { return st.Stats().Queued >= 50 })
	close(release)
	released = true
	wg.Wait()
	close(codes)
	if err := <-wedged; err != nil {
		t.Fatal(err)
	}
	for c := range codes {
		if c != 200 {
			t.Fatalf("a send answered %d", c)
		}
	}
	// The wedge's own commit and the one for the 50, plus the commits of
	// the "sent" events the sends append afterwards (asynchronously, in a
	// batch or two when the machine is busy); far from one per send.
	if n := st.Stats().Commits - commits; n > 8 {
		t.Errorf("50 concurrent sends took %d commits", n)
	}
}
