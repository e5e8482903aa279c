package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ocapnet/ocapnet/endpoint"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// Request body bounds: one request, and a batch of sends.
const (
	maxRequestBody = 8 << 20
	maxBatchBody   = 64 << 20
	// maxWait bounds ?timeout= of a send that waits for its
	// acknowledgement; defaultWait is its default.
	maxWait     = 10 * time.Minute
	defaultWait = 30 * time.Second
)

func checkAPIAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--api %q: %w", addr, err)
	}
	if allowRemote || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--api %q is not a loopback address; pass --api-allow-remote to serve the API beyond this machine", addr)
	}
	return nil
}

type apiServer struct {
	d     *Daemon
	addr  string // host:port bound
	url   string // http(s)://host:port
	guard *guard
	auth  *auth
	srv   *http.Server
	done  chan struct{}

	sseClients prometheus.Gauge
}

func startAPI(d *Daemon) (*apiServer, error) {
	o := d.opts
	dir := d.n.Store().Dir()
	tok, err := loadToken(dir, o.AllowInsecureDir)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--api-tls-cert/--api-tls-key: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", o.API)
	if err != nil {
		return nil, fmt.Errorf("--api: %w", err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	a := &apiServer{d: d, addr: addr, url: scheme + "://" + addr, guard: newGuard(addr, o.APIHosts, tlsConf != nil),
		auth: newAuth(tok, port, tlsConf != nil), done: make(chan struct{})}
	a.sseClients = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ocapnet_daemon_event_stream_clients",
		Help: "Clients connected to the event stream (GET /v1/events)."})
	if err := d.reg.Register(a.sseClients); err != nil {
		ln.Close()
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, AddrFile), []byte(a.url+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("writing %s: %w", filepath.Join(dir, AddrFile), err)
	}
	if o.AllowRemote && tlsConf == nil {
		d.log.Warn("serving the API over plain HTTP beyond loopback (--api-insecure-http): the token and every message cross the network in clear text",
			"api", addr)
	}
	a.srv = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConf,
		ErrorLog: nil, IdleTimeout: 2 * time.Minute}
	go func() {
		defer close(a.done)
		if tlsConf != nil {
			a.srv.ServeTLS(ln, "", "")
		} else {
			a.srv.Serve(ln)
		}
	}()
	return a, nil
}

func (a *apiServer) routes() http.Handler {
	mux := http.NewServeMux()
	open := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.guarded(h, false)) }
	authed := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.guarded(a.auth.required(h), false)) }
	open("GET /{$}", a.statusPage)
	open("GET /status.js", a.statusScript)
	open("GET /healthz", a.healthz)
	open("GET /login", a.login)
	authed("GET /metrics", promhttp.HandlerFor(a.d.reg, promhttp.HandlerOpts{}).ServeHTTP)
	mux.Handle("POST /v1/send", a.guarded(a.auth.required(http.HandlerFunc(a.send)), true))
	authed("POST /v1/login", a.newLogin)
	authed("GET /v1/peers", a.peers)
	authed("GET /v1/info", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.d.Info()) })
	authed("GET /v1/peers/{peer}/parked", a.peerOp("parked"))
	for _, op := range []string{"close", "reconnect", "resend", "discard", "forget"} {
		authed("POST /v1/peers/{peer}/"+op, a.peerOp(op))
	}
	for _, op := range []string{"export", "resolve", "redeem", "call"} {
		authed("POST /v1/"+op, a.kernelOp(op))
	}
	authed("GET /v1/events", a.events)
	authed("POST /v1/events/ack", a.ackEvents)
	mux.Handle("/", a.guarded(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no endpoint %s %s (see docs/DAEMON.md)", r.Method, r.URL.Path))
	}), false))
	return mux
}

// guarded applies the guard and common headers before h.
func (a *apiServer) guarded(h http.Handler, ndjson bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if e := a.guard.check(r, ndjson); e != nil {
			writeError(w, e.status, e.err)
			return
		}
		h.ServeHTTP(w, r)
	})
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// errorBody is an error answer: the error, and where a request was wrong.
type errorBody struct {
	Event string          `json:"event,omitempty"` // "error" in batch answers
	ID    json.RawMessage `json:"id,omitempty"`
	Error string          `json:"error"`
	Field string          `json:"field,omitempty"`
	Item  *int            `json:"item,omitempty"`
}

func newErrorBody(err error) errorBody {
	b := errorBody{Error: err.Error()}
	var re *RequestError
	if errors.As(err, &re) {
		b.Field = re.Field
		if re.Item >= 0 {
			b.Item = ptr(re.Item)
		}
	}
	return b
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, newErrorBody(err))
}

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body over %d bytes", ErrBadRequest, limit)}
		}
		return nil, &apiError{http.StatusBadRequest, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)}
	}
	return b, nil
}

// checkQuery refuses query parameters an endpoint does not take.
func checkQuery(r *http.Request, allowed ...string) error {
	for k := range r.URL.Query() {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return fieldError(k, "unknown query parameter")
		}
	}
	return nil
}

// send sends one message (a JSON object), or a batch (a JSON array, or
// NDJSON with Content-Type application/x-ndjson) in one group commit. A
// batch with any bad item is refused whole: nothing of it is sent.
func (a *apiServer) send(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r, "wait", "timeout"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	wait, timeout := q.Get("wait"), defaultWait
	if wait != "" && wait != "acked" {
		writeError(w, http.StatusBadRequest, fieldError("wait", "want \"acked\", got %q", wait))
		return
	}
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > maxWait {
			writeError(w, http.StatusBadRequest, fieldError("timeout", "want a duration up to %v (e.g. 30s), got %q", maxWait, s))
			return
		}
		timeout = d
	}
	body, e := readBody(w, r, maxBatchBody)
	if e != nil {
		writeError(w, e.status, e.err)
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var reqs []request
	var err error
	batch := true
	switch trimmed := bytes.TrimSpace(body); {
	case mt == "application/x-ndjson":
		reqs, err = parseNDJSON(body, "send")
	case len(trimmed) > 0 && trimmed[0] == '[':
		reqs, err = parseBatch(body, "send")
	default:
		batch = false
		if len(body) > maxRequestBody {
			err = posError(-1, "a single request over %d bytes", maxRequestBody)
			break
		}
		var one request
		one, err = parseRequest(body, "send")
		reqs = []request{one}
	}
	for i := 0; err == nil && i < len(reqs); i++ {
		if err = a.d.checkSize(reqs[i]); err != nil && batch {
			err = atItem(err, i)
		}
	}
	if err == nil && batch && wait != "" {
		err = fieldError("wait", "is for a single send, not a batch")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	res, _ := a.d.sendAll(r.Context(), reqs, false)
	if !batch {
		if res[0].Err != nil {
			writeError(w, errorStatus(res[0].Err), res[0].Err)
			return
		}
		sent := sentAnswer{"sent", reqs[0].ID, reqs[0].To.String(), res[0].Seq}
		if wait == "" {
			writeJSON(w, http.StatusOK, sent)
			return
		}
		a.waitAcked(w, r, sent, reqs[0].To, timeout)
		return
	}
	out := make([]any, len(res))
	for i, x := range res {
		if x.Err != nil {
			eb := newErrorBody(x.Err)
			eb.Event, eb.ID, eb.Item = "error", reqs[i].ID, ptr(i)
			out[i] = eb
		} else {
			out[i] = sentAnswer{"sent", reqs[i].ID, reqs[i].To.String(), x.Seq}
		}
	}
	if mt == "application/x-ndjson" {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		var buf bytes.Buffer
		for _, v := range out {
			buf.Write(mustJSON(v))
			buf.WriteByte('\n')
		}
		w.Write(buf.Bytes())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// waitAcked answers a send once its message is acknowledged (200 "acked"),
// given up (409 "giveup"), or the timeout passed (202 "sent": the message
// stays queued and is still delivered).
func (a *apiServer) waitAcked(w http.ResponseWriter, r *http.Request, sent sentAnswer, to peer.ID, timeout time.Duration) {
	ch := a.d.acks.add(to, sent.Seq)
	defer a.d.acks.remove(to, sent.Seq)
	// The acknowledgement may have come before the waiter was registered.
	if p, ok, _ := a.d.n.Peer(to); ok {
		switch {
		case p.Acked >= sent.Seq:
			writeJSON(w, http.StatusOK, ackedEvent{"acked", sent.ID, sent.To, sent.Seq})
			return
		case p.Parked > 0 && sent.Seq <= p.Acked+uint64(p.Parked):
			writeJSON(w, http.StatusConflict, map[string]any{"event": "giveup", "id": sent.ID, "to": sent.To, "seq": sent.Seq,
				"error": "the message was given up on and is parked (resend or discard it)"})
			return
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case reason := <-ch:
		if reason == "" {
			writeJSON(w, http.StatusOK, ackedEvent{"acked", sent.ID, sent.To, sent.Seq})
			return
		}
		writeJSON(w, http.StatusConflict, map[string]any{"event": "giveup", "id": sent.ID, "to": sent.To, "seq": sent.Seq, "error": reason})
	case <-timer.C:
		writeJSON(w, http.StatusAccepted, map[string]any{"event": "sent", "id": sent.ID, "to": sent.To, "seq": sent.Seq,
			"error": fmt.Sprintf("not acknowledged within %v; the message stays queued and is still delivered", timeout)})
	case <-r.Context().Done():
	case <-a.d.done:
		writeError(w, http.StatusServiceUnavailable, errors.New("the daemon is stopping; the message stays queued"))
	}
}

func (a *apiServer) peers(w http.ResponseWriter, r *http.Request) {
	res, _ := a.d.runOp(request{Op: "peers"})
	writeJSON(w, http.StatusOK, res)
}

// peerOp runs a peer op; only reconnect takes a body ({"hints": […]}), the
// others take none (or {}).
func (a *apiServer) peerOp(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := checkQuery(r); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		p, err := peer.Decode(r.PathValue("peer"))
		if err != nil {
			writeError(w, http.StatusBadRequest, fieldError("peer", "invalid peer ID %q in the path: %v", r.PathValue("peer"), err))
			return
		}
		req := request{Op: op, Peer: p}
		body, e := readBody(w, r, maxRequestBody)
		if e != nil {
			writeError(w, e.status, e.err)
			return
		}
		if len(bytes.TrimSpace(body)) > 0 {
			ms, err := parseObject(body)
			for i := 0; err == nil && i < len(ms); i++ {
				if op != "reconnect" || ms[i].key != "hints" {
					takes := "no fields"
					if op == "reconnect" {
						takes = "only hints"
					}
					err = fieldError(ms[i].key, "unknown field for %s (it takes %s)", op, takes)
					break
				}
				err = req.setField("hints", ms[i].val)
			}
			if err == nil {
				err = req.check()
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
		}
		res, err := a.d.runOp(req)
		if err != nil {
			writeError(w, errorStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// kernelOp runs a kernel op from a JSON body; redeem and call answer once
// the peer has (within ?timeout=, default 60 s, at most 10 min).
func (a *apiServer) kernelOp(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := checkQuery(r, "timeout"); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		timeout := 60 * time.Second
		if q := r.URL.Query().Get("timeout"); q != "" {
			d, err := time.ParseDuration(q)
			if err != nil || d <= 0 || d > 10*time.Minute {
				writeError(w, http.StatusBadRequest, fieldError("timeout", "want a duration up to 10m, got %q", q))
				return
			}
			timeout = d
		}
		body, e := readBody(w, r, maxRequestBody)
		if e != nil {
			writeError(w, e.status, e.err)
			return
		}
		req, err := parseRequest(body, op)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		stop := context.AfterFunc(a.d.kctx, cancel)
		defer stop()
		res, err := a.d.kernelOp(ctx, req)
		if err != nil {
			writeError(w, errorStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// ackEvents deletes the events up to {"upTo": N} from the log.
func (a *apiServer) ackEvents(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(w, r, maxRequestBody)
	if e != nil {
		writeError(w, e.status, e.err)
		return
	}
	ms, err := parseObject(body)
	var upTo *uint64
	for i := 0; err == nil && i < len(ms); i++ {
		if ms[i].key != "upTo" {
			err = fieldError(ms[i].key, "unknown field (want {\"upTo\": N})")
			break
		}
		var n uint64
		if json.Unmarshal(ms[i].val, &n) != nil {
			err = fieldError("upTo", "want an event ID (a whole number), got %s", ms[i].val)
			break
		}
		upTo = &n
	}
	if err == nil && upTo == nil {
		err = fieldError("upTo", "is required")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	n, err := a.d.elog.trim(*upTo)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
}

// newLogin answers a one-time link to the status page.
func (a *apiServer) newLogin(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(w, r, maxRequestBody)
	if e == nil && len(bytes.TrimSpace(body)) > 0 && string(bytes.TrimSpace(body)) != "{}" {
		e = &apiError{http.StatusBadRequest, fieldError("", "the login request takes no fields")}
	}
	if e != nil {
		writeError(w, e.status, e.err)
		return
	}
	code, exp, err := a.auth.newLogin()
	if err != nil {
		writeError(w, http.StatusTooManyRequests, err)
		return
	}
	scheme := "http"
	if a.guard.tls {
		scheme = "https"
	}
	writeJSON(w, http.StatusOK, map[string]any{"url": scheme + "://" + r.Host + "/login?code=" + code, "expires": exp.UTC()})
}

// login consumes a one-time link: it sets the session cookie and sends the
// browser to the status page.
func (a *apiServer) login(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r, "code"); err != nil || !a.auth.useLogin(r.URL.Query().Get("code")) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "This login link was used already, has expired, or is wrong. Run `ocapnet login` for a new one.\n")
		return
	}
	http.SetCookie(w, a.auth.newSession())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// errorStatus maps an error to an HTTP status.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, transport.ErrInvalidPeer), errors.Is(err, node.ErrInvalidMessage),
		errors.Is(err, transport.ErrMessageTooLarge):
		return 400
	case errors.Is(err, node.ErrPeerDenied):
		return 403
	case errors.Is(err, ErrNoKernel), errors.Is(err, ErrUnknownHandle), errors.Is(err, endpoint.ErrRedeemFailed):
		return 404
	case errors.Is(err, endpoint.ErrRedeemTimeout), errors.Is(err, endpoint.ErrGaveUp), errors.Is(err, endpoint.ErrPeerRestarted):
		return 504
	case errors.Is(err, node.ErrNothingParked):
		return 404
	case errors.Is(err, transport.ErrIntentionallyClosed), errors.Is(err, transport.ErrClosedByPeer):
		return 409
	case errors.Is(err, node.ErrWindowFull), errors.Is(err, context.DeadlineExceeded):
		return 503
	case errors.Is(err, node.ErrStopped), errors.Is(err, transport.ErrStopped):
		return 503
	default:
		return 500
	}
}
