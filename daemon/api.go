package daemon

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ocapnet/ocapnet/store"
)

// TokenFile and AddrFile are written in the data directory: the API's bearer
// token (mode 0600) and its listen address, for the thin clients.
const (
	TokenFile = "api-token"
	AddrFile  = "api-addr"
)

// maxRequestBody bounds an API request body.
const maxRequestBody = 8 << 20

//go:embed status.html
var statusPage []byte

func checkAPIAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--api %q: %w", addr, err)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--api %q is not a loopback address; pass --api-allow-remote to serve the API beyond this machine", addr)
	}
	return nil
}

// LoadToken returns the API token of a data directory, creating it (mode
// 0600) if missing.
func LoadToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}

type apiServer struct {
	d     *Daemon
	token string
	addr  string
	srv   *http.Server
	done  chan struct{}
}

func startAPI(d *Daemon, addr string) (*apiServer, error) {
	dir := d.n.Store().Dir()
	tok, err := LoadToken(dir)
	if err != nil {
		return nil, fmt.Errorf("api token: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--api: %w", err)
	}
	a := &apiServer{d: d, token: tok, addr: ln.Addr().String(), done: make(chan struct{})}
	if err := os.WriteFile(filepath.Join(dir, AddrFile), []byte(a.addr+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.status)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", a.auth(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{})))
	mux.Handle("POST /v1/send", a.auth(http.HandlerFunc(a.send)))
	mux.Handle("GET /v1/peers", a.auth(http.HandlerFunc(a.peers)))
	mux.Handle("GET /v1/info", a.auth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, d.Ready()) })))
	mux.Handle("GET /v1/peers/{peer}/parked", a.auth(a.peerOp("parked")))
	for _, op := range []string{"close", "reconnect", "resend", "discard", "forget"} {
		mux.Handle("POST /v1/peers/{peer}/"+op, a.auth(a.peerOp(op)))
	}
	mux.Handle("GET /v1/events", a.auth(http.HandlerFunc(a.events)))
	mux.Handle("POST /v1/events/ack", a.auth(http.HandlerFunc(a.ackEvents)))
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(a.done)
		a.srv.Serve(ln)
	}()
	return a, nil
}

func (a *apiServer) stop(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	if err != nil {
		a.srv.Close()
	}
	<-a.done
	if errors.Is(err, context.DeadlineExceeded) {
		return nil // event streams were cut; that is what stopping means
	}
	return err
}

// auth accepts "Authorization: Bearer TOKEN" or ?token=TOKEN (for the
// status page and EventSource, which cannot set headers).
func (a *apiServer) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got == "" {
			got = r.URL.Query().Get("token")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ocapnet"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong API token (see the api-token file in the data directory)"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (a *apiServer) send(w http.ResponseWriter, r *http.Request) {
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: body is not a JSON send request: %v", ErrBadRequest, err))
		return
	}
	req.Op = "send"
	res, after, err := a.d.do(r.Context(), req)
	for _, e := range after {
		a.d.emitLogged(e)
	}
	if err != nil {
		writeError(w, errorStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *apiServer) peers(w http.ResponseWriter, r *http.Request) {
	res, _, _ := a.d.do(r.Context(), request{Op: "peers"})
	writeJSON(w, http.StatusOK, res)
}

func (a *apiServer) peerOp(op string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hints []string
		if op == "reconnect" && r.ContentLength > 0 {
			var body struct {
				Hints []string `json:"hints"`
			}
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody)).Decode(&body); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("%w: %v", ErrBadRequest, err))
				return
			}
			hints = body.Hints
		}
		p, err := parsePeer(r.PathValue("peer"), "peer")
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		res, err := a.d.peerOp(request{Op: op, Hints: hints}, p)
		if err != nil {
			writeError(w, errorStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// events streams the durable event log as server-sent events from the event
// after Last-Event-ID (or ?after=N), then live. Events stay in the log until
// a consumer acknowledges them with POST /v1/events/ack.
func (a *apiServer) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	after := r.Header.Get("Last-Event-ID")
	if q := r.URL.Query().Get("after"); q != "" {
		after = q
	}
	var from uint64
	if after != "" {
		var err error
		if from, err = strconv.ParseUint(after, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: Last-Event-ID/after %q is not a number", ErrBadRequest, after))
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	f := a.d.feed
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		wake := f.wait()
		evs, err := f.st.Events(from, 256)
		if err != nil {
			return
		}
		for _, e := range evs {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.ID, e.Data); err != nil {
				return
			}
			from = e.ID
		}
		fl.Flush()
		if len(evs) == 256 {
			continue
		}
		select {
		case <-wake:
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case <-r.Context().Done():
			return
		case <-f.done:
			return
		}
	}
}

func (a *apiServer) ackEvents(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UpTo *uint64 `json:"upTo"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody)).Decode(&body); err != nil || body.UpTo == nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf(`%w: want {"upTo": N}`, ErrBadRequest))
		return
	}
	n, err := a.d.feed.st.TrimEvents(*body.UpTo)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
}

// status serves the status page; it reads the token from its own URL.
func (a *apiServer) status(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(statusPage)
}

// feed is the durable event log plus a wake-up for live readers.
type feed struct {
	st   *store.Store
	mu   sync.Mutex
	ch   chan struct{} // closed and replaced on every append
	done chan struct{}
	once sync.Once
}

func newFeed() *feed { return &feed{ch: make(chan struct{}), done: make(chan struct{})} }

func (f *feed) append(b []byte) error {
	if _, err := f.st.AppendEvent(b); err != nil {
		return err
	}
	f.mu.Lock()
	close(f.ch)
	f.ch = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// wait returns a channel closed at the next append.
func (f *feed) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch
}

func (f *feed) close() { f.once.Do(func() { close(f.done) }) }
