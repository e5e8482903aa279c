package daemon

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The API's defences, outermost first:
//
//   - guard: the Host header must name the API (DNS rebinding), a present
//     Origin must be the API's own (cross-site requests), and a POST must
//     carry a JSON content type (a page's "simple" text/plain POST, which
//     browsers send without asking first, is refused).
//   - authentication: "Authorization: Bearer TOKEN" (the scheme in any case,
//     the token compared in constant time), or, for GET requests from the
//     status page, a session cookie (HttpOnly, SameSite=Strict) that a
//     one-time login link sets. A token in the URL is refused.

// guard checks where a request comes from.
type guard struct {
	port     string
	names    map[string]bool // host names accepted in Host and Origin
	wildcard bool            // bound to every address: any IP literal is accepted too
	tls      bool
}

func newGuard(boundAddr string, extra []string, tls bool) *guard {
	host, port, _ := net.SplitHostPort(boundAddr)
	g := &guard{port: port, names: map[string]bool{"localhost": true}, tls: tls}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		g.wildcard = true
	}
	g.names[strings.ToLower(host)] = true
	if host == "localhost" || (net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()) {
		g.names["127.0.0.1"], g.names["::1"] = true, true
	}
	for _, h := range extra {
		g.names[strings.TrimSuffix(strings.ToLower(h), ".")] = true
	}
	return g
}

// hostOK reports whether hostport (a Host header, or an Origin's host)
// names this API.
func (g *guard) hostOK(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "80"
		if g.tls {
			port = "443"
		}
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if port != g.port || host == "" {
		return false
	}
	if g.names[host] {
		return true
	}
	return g.wildcard && net.ParseIP(host) != nil
}

// originOK reports whether an Origin header is the API's own.
func (g *guard) originOK(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" {
		return false
	}
	want := "http"
	if g.tls {
		want = "https"
	}
	return u.Scheme == want && g.hostOK(u.Host)
}

// errorf is an API error with its status.
type apiError struct {
	status int
	err    error
}

// check returns why a request is refused, or nil.
func (g *guard) check(r *http.Request, ndjson bool) *apiError {
	if !g.hostOK(r.Host) {
		return &apiError{http.StatusMisdirectedRequest, fmt.Errorf("host %q is not this API's address (DNS rebinding?); use %s or localhost:%s", r.Host, g.example(), g.port)}
	}
	if o := r.Header.Get("Origin"); o != "" && !g.originOK(o) {
		return &apiError{http.StatusForbidden, fmt.Errorf("origin %q is not this API's own: cross-site requests are refused", o)}
	}
	if r.URL.Query().Has("token") {
		return &apiError{http.StatusBadRequest, errors.New("a token in the URL is refused (URLs end up in logs and histories): " +
			"send Authorization: Bearer TOKEN, or open the status page with a one-time link from `ocapnet login`")}
	}
	if r.Method == http.MethodPost {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || !(mt == "application/json" || (ndjson && mt == "application/x-ndjson")) {
			want := "application/json"
			if ndjson {
				want += " or application/x-ndjson"
			}
			return &apiError{http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: want %s", r.Header.Get("Content-Type"), want)}
		}
	}
	return nil
}

func (g *guard) example() string {
	for n := range g.names {
		if n != "localhost" {
			return net.JoinHostPort(n, g.port)
		}
	}
	return net.JoinHostPort("localhost", g.port)
}

// sessionTTL is how long a status page session lasts; loginTTL how long a
// one-time login link is valid.
const (
	sessionTTL = 12 * time.Hour
	loginTTL   = 2 * time.Minute
	maxLogins  = 16
)

// auth holds the API token, the session key and the pending login codes.
type auth struct {
	token  []byte
	cookie string // the session cookie's name (per port: cookies ignore ports)
	secure bool

	mu     sync.Mutex
	logins map[[32]byte]time.Time // sha256 of a code → expiry
}

func newAuth(token string, port string, secure bool) *auth {
	return &auth{token: []byte(token), cookie: "ocapnet_session_" + port, secure: secure, logins: map[[32]byte]time.Time{}}
}

// bearer reports whether the request carries the token.
func (a *auth) bearer(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), a.token) == 1
}

func (a *auth) sessionMAC(expiry int64) string {
	m := hmac.New(sha256.New, a.token)
	fmt.Fprintf(m, "ocapnet status session %d", expiry)
	return hex.EncodeToString(m.Sum(nil))
}

// session reports whether the request carries a valid session cookie.
func (a *auth) session(r *http.Request) bool {
	c, err := r.Cookie(a.cookie)
	if err != nil {
		return false
	}
	exp, mac, ok := strings.Cut(c.Value, ".")
	if !ok {
		return false
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || time.Now().Unix() > e {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(a.sessionMAC(e)))
}

// newSession returns a session cookie.
func (a *auth) newSession() *http.Cookie {
	exp := time.Now().Add(sessionTTL).Unix()
	return &http.Cookie{Name: a.cookie, Value: fmt.Sprintf("%d.%s", exp, a.sessionMAC(exp)), Path: "/",
		MaxAge: int(sessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secure}
}

// newLogin returns a one-time login code.
func (a *auth) newLogin() (string, time.Time, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", time.Time{}, err
	}
	code := hex.EncodeToString(raw)
	exp := time.Now().Add(loginTTL)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for k, e := range a.logins {
		if now.After(e) {
			delete(a.logins, k)
		}
	}
	if len(a.logins) >= maxLogins {
		return "", time.Time{}, fmt.Errorf("too many unused login links (%d); wait %v", maxLogins, loginTTL)
	}
	a.logins[sha256.Sum256([]byte(code))] = exp
	return code, exp, nil
}

// useLogin consumes a login code: true once per valid code.
func (a *auth) useLogin(code string) bool {
	k := sha256.Sum256([]byte(code))
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.logins[k]
	delete(a.logins, k)
	return ok && time.Now().Before(exp)
}

// required wraps h: the bearer token, or for GET a session cookie.
func (a *auth) required(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.bearer(r) || (r.Method == http.MethodGet && a.session(r)) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ocapnet"`)
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong API token: send Authorization: Bearer TOKEN "+
			"(the api-token file in the data directory); the status page needs a one-time link from `ocapnet login`"))
	})
}
