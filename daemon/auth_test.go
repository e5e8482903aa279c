package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func randomPeer(t *testing.T) string {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPublicKey(pub)
	return id.String()
}

// The token file: made with crypto/rand, written atomically with mode 0600;
// an empty, short, unreadable or world-readable one stops the daemon with
// an error naming the file.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	tok, err := LoadToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
		t.Fatalf("token %q", tok)
	}
	path := filepath.Join(dir, TokenFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi.Mode(), err)
	}
	if again, err := LoadToken(dir); err != nil || again != tok {
		t.Fatalf("second load: %q %v", again, err)
	}
	if other, _ := LoadToken(t.TempDir()); other == tok {
		t.Fatal("two directories got the same token")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files left besides the token: %v", entries)
	}

	for name, c := range map[string]struct {
		setup func(path string)
		want  string
	}{
		"empty":      {func(p string) { os.WriteFile(p, nil, 0o600) }, "is empty"},
		"blank":      {func(p string) { os.WriteFile(p, []byte(" \n"), 0o600) }, "is empty"},
		"short":      {func(p string) { os.WriteFile(p, []byte("abc123\n"), 0o600) }, "at least 32"},
		"unreadable": {func(p string) { os.Mkdir(p, 0o700) }, "is a directory"},
		"readable by others": {func(p string) {
			os.WriteFile(p, []byte(strings.Repeat("a", 64)), 0o644)
			os.Chmod(p, 0o644)
		}, "chmod 600"},
		"header-unsafe": {func(p string) { os.WriteFile(p, []byte(strings.Repeat("a", 40)+"\x01b"), 0o600) }, "cannot travel"},
	} {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t)
			o.API = "127.0.0.1:0"
			path := filepath.Join(o.Node.Dir, TokenFile)
			c.setup(path)
			_, err := Start(context.Background(), o)
			if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Start: %v; want ErrBadToken naming %s and %q", err, path, c.want)
			}
		})
	}
	t.Run("readable by others, allowed", func(t *testing.T) {
		o := testOptions(t)
		o.API, o.AllowInsecureDir = "127.0.0.1:0", true
		os.WriteFile(filepath.Join(o.Node.Dir, TokenFile), []byte(strings.Repeat("a", 64)), 0o644)
		startDaemon(t, o)
	})
}

// Every way past the token that the API used to allow is refused, and a
// refused send sends nothing.
func TestAPIAuth(t *testing.T) {
	d, tok := apiDaemon(t, nil)
	base := "http://" + d.APIAddr()
	_, port, _ := net.SplitHostPort(d.APIAddr())
	to := randomPeer(t)
	sendBody := fmt.Sprintf(`{"to":%q,"method":"m"}`, to)
	bearer := "Authorization: Bearer " + tok
	jsonCT := "Content-Type: application/json"

	cases := []struct {
		name    string
		method  string
		path    string
		body    string
		headers []string
		code    int
		want    string
	}{
		{"no token", "GET", "/v1/peers", "", nil, 401, "missing or wrong API token"},
		{"wrong token", "GET", "/v1/peers", "", []string{"Authorization: Bearer " + strings.Repeat("0", 64)}, 401, ""},
		{"token prefix", "GET", "/v1/peers", "", []string{"Authorization: Bearer " + tok[:40]}, 401, ""},
		{"no scheme", "GET", "/v1/peers", "", []string{"Authorization: " + tok}, 401, ""},
		{"lower-case bearer", "GET", "/v1/peers", "", []string{"Authorization: bearer " + tok}, 200, `"peers"`},
		{"upper-case bearer", "GET", "/v1/info", "", []string{"Authorization: BEARER " + tok}, 200, `"peerId"`},
		{"token in the URL", "GET", "/v1/peers?token=" + tok, "", nil, 400, "token in the URL"},
		{"token in the URL with a header", "GET", "/metrics?token=" + tok, "", []string{bearer}, 400, "token in the URL"},
		{"metrics need the token", "GET", "/metrics", "", nil, 401, ""},
		{"metrics", "GET", "/metrics", "", []string{bearer}, 200, "ocapnet_transport_"},
		{"wrong Host", "GET", "/v1/peers", "", []string{bearer, "Host: evil.example:" + port}, 421, "not this API's address"},
		{"rebinding Host on /healthz", "GET", "/healthz", "", []string{"Host: attacker.example:" + port}, 421, ""},
		{"Host with another port", "GET", "/v1/peers", "", []string{bearer, "Host: 127.0.0.1:1"}, 421, ""},
		{"Host without a port", "GET", "/v1/peers", "", []string{bearer, "Host: 127.0.0.1"}, 421, ""},
		{"Host localhost", "GET", "/v1/peers", "", []string{bearer, "Host: localhost:" + port}, 200, ""},
		{"foreign Origin", "POST", "/v1/send", sendBody, []string{bearer, jsonCT, "Origin: http://evil.example"}, 403, "origin"},
		{"null Origin", "POST", "/v1/send", sendBody, []string{bearer, jsonCT, "Origin: null"}, 403, "origin"},
		{"Origin on another port", "POST", "/v1/send", sendBody, []string{bearer, jsonCT, "Origin: http://127.0.0.1:1"}, 403, ""},
		{"https Origin for an http API", "POST", "/v1/send", sendBody, []string{bearer, jsonCT, "Origin: https://127.0.0.1:" + port}, 403, ""},
		{"text/plain send", "POST", "/v1/send", sendBody, []string{bearer, "Content-Type: text/plain"}, 415, "Content-Type"},
		{"form send", "POST", "/v1/send", sendBody, []string{bearer, "Content-Type: application/x-www-form-urlencoded"}, 415, ""},
		{"no content type", "POST", "/v1/send", sendBody, []string{bearer}, 415, ""},
		{"text/plain peer op", "POST", "/v1/peers/" + to + "/close", "", []string{bearer, "Content-Type: text/plain"}, 415, ""},
		{"text/plain ack", "POST", "/v1/events/ack", `{"upTo":1}`, []string{bearer, "Content-Type: text/plain"}, 415, ""},
	}
	for _, c := range cases {
		code, body, _ := call(t, c.method, base+c.path, c.body, c.headers...)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want %d and %q", c.name, code, body, c.code, c.want)
		}
	}
	if n := sentTo(d, to); n != 0 {
		t.Fatalf("refused requests sent %d messages", n)
	}
	// The API's own origin and a JSON content type go through.
	code, body, _ := call(t, "POST", base+"/v1/send", sendBody, bearer, jsonCT+"; charset=utf-8", "Origin: http://"+d.APIAddr())
	if code != 200 || !strings.Contains(body, `"seq":1`) {
		t.Fatalf("send with own origin: %d %s", code, body)
	}
}

// The status page signs in once, through a one-time link that sets an
// HttpOnly, SameSite=Strict cookie; the cookie reads, never writes.
func TestStatusLogin(t *testing.T) {
	d, tok := apiDaemon(t, nil)
	base := "http://" + d.APIAddr()
	bearer := "Authorization: Bearer " + tok
	if code, _, _ := call(t, "POST", base+"/v1/login", "", "Content-Type: application/json"); code != 401 {
		t.Fatalf("login without the token: %d", code)
	}
	code, body, _ := call(t, "POST", base+"/v1/login", "", bearer, "Content-Type: application/json")
	m := regexp.MustCompile(`"url":"(http://[^"]+/login\?code=[0-9a-f]{64})"`).FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("login link: %d %s", code, body)
	}
	link := m[1]
	code, _, h := call(t, "GET", link, "")
	cookie := h.Get("Set-Cookie")
	if code != 303 || h.Get("Location") != "/" || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") {
		t.Fatalf("following the link: %d %v", code, h)
	}
	if strings.Contains(cookie, tok) {
		t.Fatal("the cookie holds the token")
	}
	if code, _, _ := call(t, "GET", link, ""); code != 403 {
		t.Fatalf("the link worked twice: %d", code)
	}
	if code, _, _ := call(t, "GET", base+"/login?code="+strings.Repeat("ab", 32), ""); code != 403 {
		t.Fatalf("a made-up code: %d", code)
	}
	sess := "Cookie: " + strings.SplitN(cookie, ";", 2)[0]
	if code, body, _ := call(t, "GET", base+"/v1/peers", "", sess); code != 200 || !strings.Contains(body, `"peers"`) {
		t.Fatalf("peers with the session: %d %s", code, body)
	}
	to := randomPeer(t)
	if code, _, _ := call(t, "POST", base+"/v1/send", fmt.Sprintf(`{"to":%q,"method":"m"}`, to), sess, "Content-Type: application/json"); code != 401 {
		t.Fatalf("send with only the session cookie: %d", code)
	}
	forged := "Cookie: " + d.api.auth.cookie + "=9999999999." + strings.Repeat("0", 64)
	if code, _, _ := call(t, "GET", base+"/v1/peers", "", forged); code != 401 {
		t.Fatalf("forged session: %d", code)
	}
	expired := d.api.auth.sessionMAC(1)
	if code, _, _ := call(t, "GET", base+"/v1/peers", "", "Cookie: "+d.api.auth.cookie+"=1."+expired); code != 401 {
		t.Fatalf("expired session: %d", code)
	}
	if sentTo(d, to) != 0 {
		t.Fatal("a cookie-only send was sent")
	}
	// The status page itself needs nothing, and tells how to sign in.
	code, body, h = call(t, "GET", base+"/", "")
	if code != 200 || !strings.Contains(body, "ocapnet peer") || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("status page: %d %v", code, h)
	}
	if _, js, _ := call(t, "GET", base+"/status.js", ""); !strings.Contains(js, "ocapnet login") {
		t.Fatal("status.js does not tell how to sign in")
	}
	if u, err := d.LoginURL(); err != nil || !strings.HasPrefix(u, base+"/login?code=") {
		t.Fatalf("LoginURL: %q %v", u, err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ocapnet test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// --api-allow-remote needs TLS, or an explicit insecure flag that is
// warned about. (The tests bind to loopback: the rule is on the flag.)
func TestRemoteAPIRequiresTLS(t *testing.T) {
	o := testOptions(t)
	o.API, o.AllowRemote = "127.0.0.1:0", true
	if _, err := Start(context.Background(), o); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "needs TLS") {
		t.Fatalf("remote without TLS: %v", err)
	}

	var logs logBuffer
	d, _ := apiDaemon(t, func(o *Options) { o.AllowRemote, o.InsecureHTTP, o.Logger = true, true, logs.logger() })
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "plain HTTP") {
		t.Fatalf("no warning for plain HTTP:\n%s", logs.String())
	}
	d.Stop(context.Background())

	cert, key, pool := selfSigned(t)
	d, tok := apiDaemon(t, func(o *Options) { o.AllowRemote, o.TLSCert, o.TLSKey = true, cert, key })
	addrFile, _ := os.ReadFile(filepath.Join(d.Node().Store().Dir(), AddrFile))
	if got := strings.TrimSpace(string(addrFile)); got != "https://"+d.APIAddr() || d.APIURL() != got {
		t.Fatalf("api-addr %q, APIURL %q", got, d.APIURL())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", d.APIURL()+"/v1/info", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("https: %v %v", resp, err)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	if code, _, _ := call(t, "GET", "http://"+d.APIAddr()+"/v1/info", ""); code != 400 {
		t.Fatalf("plain HTTP to the TLS port: %d", code)
	}
}
