package daemon

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/internal/testnet"
	"github.com/ocapnet/ocapnet/internal/testutil"
	"github.com/ocapnet/ocapnet/node"
)

// countingReader counts the reads made from it.
type countingReader struct {
	r     io.Reader
	mu    sync.Mutex
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.r.Read(p)
}

// A burst of send lines is committed in batches: answered in input order
// with consecutive sequence numbers, every "acked" after its "sent", the
// messages delivered in order, and far fewer output writes than lines.
func TestStdioBatchOrder(t *testing.T) {
	a, aw := startStdio(t, testOptions(t))
	b, _ := startStdio(t, testOptions(t))
	bID, hint := b.Node().PeerID().String(), directAddr(t, b.Daemon)
	const n = 600
	var lines []string
	for i := 1; i <= n; i++ {
		h := ""
		if i == 1 {
			h = fmt.Sprintf(`,"hints":[%q]`, hint)
		}
		lines = append(lines, fmt.Sprintf(`{"op":"send","id":%d,"to":%q,"method":"m","params":[%d]%s}`, i, bID, i, h))
		if i == n/2 {
			lines = append(lines, `{"op":"peers","id":"mid"}`, `{"op":"send","id":"bad","to":"x","method":"m"}`)
		}
	}
	writesBefore := aw.count()
	a.send(lines...)
	sent, acked := map[float64]bool{}, map[float64]bool{}
	nextSent := 1.0
	sawMid := false
	for len(sent) < n || len(acked) < n {
		m := a.next("", 30*time.Second)
		switch m["event"] {
		case "sent":
			if m["id"] != nextSent || m["seq"] != nextSent {
				t.Fatalf("sent out of order: %v, want id and seq %v", m, nextSent)
			}
			sent[nextSent] = true
			nextSent++
		case "peers":
			if m["id"] != "mid" || len(sent) != n/2 {
				t.Fatalf("peers answer at %d sent: %v", len(sent), m)
			}
			sawMid = true
		case "error":
			if m["id"] != "bad" || !sawMid || m["line"] != float64(n/2+2) {
				t.Fatalf("error: %v", m)
			}
		case "acked":
			if !sent[m["seq"].(float64)] || m["id"] != m["seq"] {
				t.Fatalf("acked before its sent, or with the wrong id: %v", m)
			}
			acked[m["seq"].(float64)] = true
		}
	}
	for i := 1; i <= n; i++ {
		m := b.next("message", 10*time.Second)
		if m["seq"] != float64(i) || fmt.Sprint(m["params"]) != fmt.Sprintf("[%d]", i) {
			t.Fatalf("message %d: %v", i, m)
		}
	}
	if w := aw.count() - writesBefore; w > n/4 {
		t.Errorf("%d writes for %d answers and %d acks: lines ready together were not written together", w, n+2, n)
	}
}

// Stdin is read in large chunks: a burst of lines takes few reads.
func TestStdioReadsInChunks(t *testing.T) {
	o := testOptions(t)
	d := startDaemon(t, o)
	var lines strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&lines, `{"op":"peers","id":%d}`+"\n", i)
	}
	cr := &countingReader{r: strings.NewReader(lines.String())}
	if err := d.ServeStdio(t.Context(), cr); err != nil {
		t.Fatal(err)
	}
	if cr.reads > 4 {
		t.Fatalf("%d reads for %d bytes", cr.reads, lines.Len())
	}
}

// With CumulativeAcks, one "acked" per acknowledged range, covering every
// message once and carrying the ids of the range.
func TestCumulativeAcks(t *testing.T) {
	o := testOptions(t)
	o.CumulativeAcks = true
	a, _ := startStdio(t, o)
	b, _ := startStdio(t, testOptions(t))
	bID, hint := b.Node().PeerID().String(), directAddr(t, b.Daemon)
	const n = 300
	var lines []string
	for i := 1; i <= n; i++ {
		lines = append(lines, fmt.Sprintf(`{"op":"send","id":"r%d","to":%q,"method":"m","hints":[%q]}`, i, bID, hint))
	}
	a.send(lines...)
	next, events := uint64(1), 0
	for next <= n {
		m := a.next("acked", 30*time.Second)
		events++
		from, to := uint64(m["fromSeq"].(float64)), uint64(m["seq"].(float64))
		ids := m["ids"].([]any)
		if from != next || to < from || m["count"] != float64(to-from+1) || len(ids) != int(to-from+1) || ids[0] != fmt.Sprintf("r%d", from) {
			t.Fatalf("acked %v, want from %d", m, next)
		}
		next = to + 1
	}
	if events >= n {
		t.Fatalf("%d acked events for %d messages", events, n)
	}
	t.Logf("%d messages acknowledged in %d events", n, events)
}

// The ready information waits for the first reservation and includes the
// circuit address; losing the reservation is an "addrs" event, a WARN and
// a degraded /healthz.
func TestReadyCircuitAndAddrs(t *testing.T) {
	r := testnet.NewRelay(t)
	var logs logBuffer
	o := testOptions(t)
	o.Node.Transport.Relays = []string{r.Addr()}
	o.API, o.Logger = "127.0.0.1:0", logs.logger()
	s, _ := startStdio(t, o)
	circuit := r.Addr() + "/p2p-circuit/p2p/" + s.Node().PeerID().String()
	if !strings.Contains(strings.Join(s.Ready().Addrs, " "), circuit) {
		t.Fatalf("ready addrs %v lack %s", s.Ready().Addrs, circuit)
	}
	base := "http://" + s.APIAddr()
	if code, body, _ := call(t, "GET", base+"/healthz", ""); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthz with a reservation: %d %s", code, body)
	}
	r.Stop()
	m := s.next("addrs", 15*time.Second)
	if strings.Contains(fmt.Sprint(m["addrs"]), "p2p-circuit") {
		t.Fatalf("addrs after the relay stopped: %v", m)
	}
	s.send(`{"op":"info"}`)
	inf := s.next("info", 5*time.Second)
	if inf["health"].(map[string]any)["status"] != "degraded" || inf["relays"].([]any)[0].(map[string]any)["reserved"] != false {
		t.Fatalf("info without a reservation: %v", inf)
	}
	code, body, _ := call(t, "GET", base+"/healthz", "")
	if code != 503 || !strings.Contains(body, "degraded") || !strings.Contains(body, "no relay reservation") {
		t.Fatalf("healthz without a reservation: %d %s", code, body)
	}
	waitLog(t, &logs, "level=WARN msg=\"no reservation on relay")
	r.Start()
	m = s.next("addrs", 15*time.Second)
	if !strings.Contains(fmt.Sprint(m["addrs"]), circuit) {
		t.Fatalf("addrs after the relay came back: %v", m)
	}
}

func waitLog(t *testing.T, logs *logBuffer, want string) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, "log "+want, func() bool { return strings.Contains(logs.String(), want) })
}

// An acknowledgement that arrives while its send is in flight waits for the
// send's "sent" line (the network can be faster than the answer).
func TestAckedAfterSent(t *testing.T) {
	var buf strings.Builder
	d := &Daemon{out: newOutWriter(&buf), inflight: map[peer.ID]int{}, held: map[peer.ID][][]byte{}}
	d.out.open()
	p, _ := peer.Decode("12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc")
	d.holdAcks([]peer.ID{p})
	d.onAcked(node.Acknowledged{Peer: p, From: 1, To: 1})
	if buf.Len() != 0 {
		t.Fatalf("acked written while its send was in flight: %s", buf.String())
	}
	tk, held := d.releaseAcks([]peer.ID{p}, [][]byte{seqEvent("sent", nil, p, 1)})
	if err := d.publish(tk, held); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"sent"`) || !strings.Contains(lines[1], `"acked"`) {
		t.Fatalf("output %q", lines)
	}
	d.onAcked(node.Acknowledged{Peer: p, From: 2, To: 2}) // nothing in flight: at once
	if !strings.Contains(buf.String(), `"seq":2`) {
		t.Fatalf("output %q", buf.String())
	}
}
