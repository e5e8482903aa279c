package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// sseKeepalive is how often an idle event stream gets a comment line.
const sseKeepalive = 15 * time.Second

// events streams the durable event log as server-sent events from the event
// after Last-Event-ID (or ?after=N), then live. Events stay in the log until
// a consumer acknowledges them or retention deletes them.
//
// A client holds at most SSEBufferBytes of events in the daemon's memory
// (events are read from the store page by page as it consumes them). One
// that falls more than SSEMaxLag bytes behind the events that arrived since
// it connected gets a "disconnected" event saying so, and the stream ends;
// one that stops reading is cut off after SSEWriteTimeout.
func (a *apiServer) events(w http.ResponseWriter, r *http.Request) {
	after := r.Header.Get("Last-Event-ID")
	if q := r.URL.Query().Get("after"); q != "" {
		after = q
	}
	var from uint64
	explicit := after != ""
	if explicit {
		var err error
		if from, err = strconv.ParseUint(after, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: Last-Event-ID/after %q is not a number", ErrBadRequest, after))
			return
		}
	}
	l := a.d.elog
	a.sseClients.Inc()
	defer a.sseClients.Dec()
	first, head, appended0 := l.position()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	o := a.d.opts
	rc.SetWriteDeadline(time.Now().Add(o.SSEWriteTimeout))
	if rc.Flush() != nil {
		return
	}
	write := func(f func() error) bool {
		rc.SetWriteDeadline(time.Now().Add(o.SSEWriteTimeout))
		err := f()
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			if errors.Is(err, http.ErrAbortHandler) || a.d.stopping() {
				return false
			}
			a.d.log.Warn("event stream client not reading: disconnected", "remote", r.RemoteAddr, "position", from,
				"timeout", o.SSEWriteTimeout, "err", err)
			return false
		}
		return true
	}
	if explicit && from+1 < first && from < head {
		missed := mustJSON(struct {
			Event  string `json:"event"`
			From   uint64 `json:"from"`
			To     uint64 `json:"to"`
			Reason string `json:"reason"`
		}{"missed", from + 1, first - 1, "deleted before this client read them: acknowledged by a consumer or dropped by retention"})
		if !write(func() error { _, err := fmt.Fprintf(bw, "data: %s\n\n", missed); return err }) {
			return
		}
	}
	var liveSent int64 // bytes sent of the events that arrived after we connected
	keepalive := time.NewTicker(sseKeepalive)
	defer keepalive.Stop()
	for {
		wake := l.wait()
		evs, err := l.read(from, o.SSEBufferBytes)
		if err != nil {
			return
		}
		if len(evs) > 0 {
			ok := write(func() error {
				for i, e := range evs {
					evs[i] = storedEvent{} // what is written is not held while the client reads
					if _, err := fmt.Fprintf(bw, "id: %d\ndata: %s\n\n", e.ID, e.Data); err != nil {
						return err
					}
					from = e.ID
					if e.ID > head {
						liveSent += e.size
					}
				}
				return nil
			})
			if !ok {
				return
			}
			_, _, appended := l.position()
			if lag := appended - appended0 - liveSent; lag > o.SSEMaxLag {
				reason := fmt.Sprintf("this client fell %d bytes behind the events (limit %d, --sse-max-lag); reconnect with Last-Event-ID %d to go on",
					lag, o.SSEMaxLag, from)
				a.d.log.Warn("event stream client too slow: disconnected", "remote", r.RemoteAddr, "position", from, "lag", lag)
				write(func() error {
					_, err := fmt.Fprintf(bw, "data: %s\n\n", mustJSON(map[string]any{"event": "disconnected", "reason": reason, "lastEventId": from}))
					return err
				})
				return
			}
			continue
		}
		select {
		case <-wake:
		case <-keepalive.C:
			if !write(func() error { _, err := io.WriteString(bw, ": keepalive\n\n"); return err }) {
				return
			}
		case <-r.Context().Done():
			return
		case <-a.d.done:
			return
		}
	}
}
