package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	itest "github.com/ocapnet/ocapnet/internal/testutil"
)

// sseConn opens an event stream on a raw connection with a small receive
// buffer, reads the response header and returns the connection and its
// reader (not read further: a client that does not read).
func sseConn(t *testing.T, d *Daemon, tok, lastID string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", d.APIAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.(*net.TCPConn).SetReadBuffer(4096)
	req := fmt.Sprintf("GET /v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n", d.APIAddr(), tok)
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	return c, bufio.NewReader(resp.Body)
}

// dataLines reads the data lines of a stream until it ends or n arrived.
func dataLines(t *testing.T, c net.Conn, r *bufio.Reader, n int) []string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var out []string
	for len(out) < n {
		l, err := r.ReadString('\n')
		if strings.HasPrefix(l, "data: ") {
			out = append(out, strings.TrimSpace(strings.TrimPrefix(l, "data: ")))
		}
		if err != nil {
			break
		}
	}
	return out
}

// A client that reads more slowly than events arrive is disconnected with
// an event that tells it why and where to go on. The client reads all the
// time, one event every 50 ms (pacing, not waiting for a condition), with a
// 4 KiB receive buffer: a client that stopped reading for a while would
// leave the sender to TCP's zero-window probes, whose backoff can outlast
// the test's deadline.
func TestSSESlowClientToldWhy(t *testing.T) {
	d, tok := apiDaemon(t, func(o *Options) { o.SSEMaxLag, o.SSEBufferBytes = 64<<10, 16<<10 })
	c, r := sseConn(t, d, tok, "")
	got := make(chan []string, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		var lines []string
		for {
			l, err := r.ReadString('\n')
			if strings.HasPrefix(l, "data: ") {
				lines = append(lines, strings.TrimSpace(strings.TrimPrefix(l, "data: ")))
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				got <- lines
				return
			}
		}
	}()
	appendMany(t, d.elog, 400, 20<<10) // 8 MiB, far faster than the client reads
	lines := <-got
	if len(lines) == 0 {
		t.Fatal("no event arrived")
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, `"event":"disconnected"`) || !strings.Contains(last, "fell") || !strings.Contains(last, "Last-Event-ID") {
		t.Fatalf("the stream ended with %.200s (after %d events)", last, len(lines))
	}
	if len(lines) > 390 {
		t.Fatalf("%d events before the disconnection: not behind?", len(lines))
	}
}

// A client that stops reading is cut off after the write timeout.
func TestSSEStalledClientCut(t *testing.T) {
	var logs logBuffer
	d, tok := apiDaemon(t, func(o *Options) { o.SSEWriteTimeout, o.Logger = time.Second, logs.logger() })
	sseConn(t, d, tok, "")
	appendMany(t, d.elog, 400, 20<<10)
	waitLog(t, &logs, `level=WARN msg="event stream client not reading: disconnected"`)
	itest.WaitFor(t, 10*time.Second, "the stream handler to end", func() bool {
		return testutil.ToFloat64(d.api.sseClients) == 0
	})
}

// Clients that never read hold little of the daemon's memory each.
func TestSSEMemoryBounded(t *testing.T) {
	const buffer = 64 << 10
	d, tok := apiDaemon(t, func(o *Options) { o.SSEBufferBytes = buffer })
	appendMany(t, d.elog, 300, 10<<10) // 3 MiB stored
	// The live heap as the collection just forced marked it (HeapAlloc
	// would also count what the streams allocate after it).
	heap := func() uint64 {
		runtime.GC()
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := heap()
	const clients = 50
	for range clients {
		sseConn(t, d, tok, "")
	}
	itest.WaitFor(t, 10*time.Second, "the clients", func() bool { return testutil.ToFloat64(d.api.sseClients) == clients })
	var most uint64
	for range 10 {
		most = max(most, heap())
		time.Sleep(100 * time.Millisecond) // sampling the heap while the streams are stuck, not waiting for a condition
	}
	growth := int64(most) - int64(before)
	t.Logf("heap %d MiB before, at most %d MiB with %d clients that do not read", before>>20, most>>20, clients)
	// Each client may hold SSEBufferBytes of events, its 32 KiB writer,
	// net/http's buffers and connection, and an event being formatted
	// (about 64 KiB more, measured 5-7 MiB in all on an idle machine, up
	// to 10.6 MiB under CI's load); 6 MiB for the rest of the process. A
	// client holding what is stored (3 MiB) would be far over.
	if bound := int64(clients*(buffer+96<<10) + 6<<20); growth > bound {
		t.Fatalf("heap grew by %d KiB for %d clients (bound %d KiB)", growth>>10, clients, bound>>10)
	}
}

// A client that comes back after events it had not read were deleted is
// told the range it missed; a new client is not.
func TestSSEMissed(t *testing.T) {
	d, tok := apiDaemon(t, nil)
	first, _, _ := d.elog.position()
	for i := range 10 {
		d.elog.append(event(i, 5))
	}
	base := first - 1
	d.elog.trim(base + 5)
	c, r := sseConn(t, d, tok, fmt.Sprint(base+2))
	lines := dataLines(t, c, r, 6)
	if want := fmt.Sprintf(`"event":"missed","from":%d,"to":%d`, base+3, base+5); !strings.Contains(lines[0], want) {
		t.Fatalf("first line %s, want %s", lines[0], want)
	}
	if !strings.Contains(lines[1], `"seq":5`) {
		t.Fatalf("then %s", lines[1])
	}
	c, r = sseConn(t, d, tok, "")
	if lines := dataLines(t, c, r, 1); strings.Contains(lines[0], "missed") {
		t.Fatalf("a new client was told it missed events: %s", lines[0])
	}
}
