package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocapnet/ocapnet/daemon"
)

func init() {
	register("send", command{summary: "send a message through a running peer daemon's API (--wait: until acknowledged)", run: runSend})
	register("peers", command{summary: "list the peers of a running peer daemon (a table; --json for JSON)", run: runPeers})
	register("events", command{summary: "print a running peer daemon's events as JSON lines (durable stream)", run: runEvents})
	register("login", command{summary: "print a one-time link that opens a running peer daemon's status page", run: runLogin})
}

// Exit codes of `ocapnet send --wait` besides 0, 1 and 2.
const (
	exitNotAcked = 3 // sent, not acknowledged within --timeout (still queued)
	exitGaveUp   = 4 // given up on (parked)
)

// apiClient reaches a running daemon: the address and token come from the
// flags or from the daemon's data directory.
type apiClient struct {
	base, token string
	http        *http.Client
}

type clientOpts struct{ dir, api, token, ca *string }

func clientFlags(fs *flag.FlagSet) clientOpts {
	return clientOpts{
		dir:   fs.String("data", defaultDataDir("peer"), "the peer daemon's data directory (for its API address and token)"),
		api:   fs.String("api", "", "API address or URL (default: read from the data directory)"),
		token: fs.String("token", "", "API token (default: read from the data directory)"),
		ca:    fs.String("api-ca", "", "PEM file of the certificate authority of an HTTPS API (default: the system's)"),
	}
}

func newAPIClient(o clientOpts) (*apiClient, error) {
	api, token := *o.api, *o.token
	if api == "" {
		b, err := os.ReadFile(filepath.Join(*o.dir, daemon.AddrFile))
		if err != nil {
			return nil, fmt.Errorf("no --api given and no running daemon's address in %s: %w", *o.dir, err)
		}
		api = strings.TrimSpace(string(b))
	}
	if token == "" {
		b, err := os.ReadFile(filepath.Join(*o.dir, daemon.TokenFile))
		if err != nil {
			return nil, fmt.Errorf("no --token given and none in %s: %w", *o.dir, err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("the token file %s is empty", filepath.Join(*o.dir, daemon.TokenFile))
		}
	}
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if *o.ca != "" {
		pem, err := os.ReadFile(*o.ca)
		if err != nil {
			return nil, fmt.Errorf("--api-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--api-ca %s: no PEM certificate in it", *o.ca)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &apiClient{base: strings.TrimRight(api, "/"), token: token, http: &http.Client{Transport: tr}}, nil
}

func (c *apiClient) do(method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	return c.http.Do(req)
}

// readAnswer reads a JSON answer; a status other than want is an error
// carrying the daemon's message.
func readAnswer(resp *http.Response, want ...int) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	for _, w := range append(want, http.StatusOK) {
		if resp.StatusCode == w {
			return bytes.TrimSpace(b), nil
		}
	}
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return nil, fmt.Errorf("%s", resp.Status)
}

// printJSON copies a JSON answer to stdout as one line, or reports the
// error status.
func printJSON(resp *http.Response, stdout io.Writer) error {
	b, err := readAnswer(resp)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return nil
}

func runSend(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", stderr, "--to PEER --method M [--params JSON] [--hint MA ...] [--id JSON] [--wait [--timeout D]]")
	co := clientFlags(fs)
	to := fs.String("to", "", "recipient peer ID (required)")
	method := fs.String("method", "", "method name (required)")
	params := fs.String("params", "", "params as JSON (carried verbatim)")
	id := fs.String("id", "", "request ID as JSON, echoed in the answer and the acked event")
	var hints listFlag
	fs.Var(&hints, "hint", "location hint multiaddr (repeatable)")
	wait := fs.Bool("wait", false, "wait until the peer acknowledged the message: exit 0 acknowledged, 3 not within --timeout (it stays queued), 4 given up")
	timeout := fs.Duration("timeout", 30*time.Second, "with --wait: how long to wait for the acknowledgement (at most 10m)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *to == "" || *method == "" {
		fmt.Fprintln(stderr, "ocapnet send: --to and --method are required")
		fs.Usage()
		return 2
	}
	if *wait && (*timeout <= 0 || *timeout > 10*time.Minute) {
		fmt.Fprintf(stderr, "ocapnet send: --timeout %v: want more than 0 and at most 10m\n", *timeout)
		return 2
	}
	body := map[string]any{"to": *to, "method": *method}
	if len(hints) > 0 {
		body["hints"] = []string(hints)
	}
	for name, v := range map[string]string{"params": *params, "id": *id} {
		if v == "" {
			continue
		}
		if !json.Valid([]byte(v)) {
			fmt.Fprintf(stderr, "ocapnet send: --%s is not valid JSON\n", name)
			return 1
		}
		body[name] = json.RawMessage(v)
	}
	code := 0
	rc := clientCall(stderr, "send", co, func(c *apiClient) error {
		path := "/v1/send"
		if *wait {
			path += "?wait=acked&timeout=" + timeout.String()
			c.http.Timeout = *timeout + 30*time.Second
		}
		resp, err := c.do("POST", path, body)
		if err != nil {
			return err
		}
		status := resp.StatusCode
		b, err := readAnswer(resp, http.StatusAccepted, http.StatusConflict)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
		var ans struct{ Error string }
		json.Unmarshal(b, &ans)
		switch status {
		case http.StatusAccepted:
			fmt.Fprintf(stderr, "ocapnet send: %s\n", ans.Error)
			code = exitNotAcked
		case http.StatusConflict:
			fmt.Fprintf(stderr, "ocapnet send: %s\n", ans.Error)
			code = exitGaveUp
		}
		return nil
	})
	if rc != 0 {
		return rc
	}
	return code
}

func runPeers(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("peers", stderr, "[--data DIR | --api ADDR --token T] [--json | --table]")
	co := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON (the default when stdout is not a terminal)")
	asTable := fs.Bool("table", false, "print a table (the default on a terminal)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *asJSON && *asTable {
		fmt.Fprintln(stderr, "ocapnet peers: --json and --table are mutually exclusive")
		return 2
	}
	table := *asTable || (!*asJSON && isTerminal(stdout))
	return clientCall(stderr, "peers", co, func(c *apiClient) error {
		resp, err := c.do("GET", "/v1/peers", nil)
		if err != nil {
			return err
		}
		b, err := readAnswer(resp)
		if err != nil {
			return err
		}
		if !table {
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return err
			}
			out, _ := json.MarshalIndent(v, "", "  ")
			fmt.Fprintf(stdout, "%s\n", out)
			return nil
		}
		return printPeerTable(stdout, b, time.Now())
	})
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func runLogin(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("login", stderr, "[--data DIR | --api ADDR --token T]")
	co := clientFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return clientCall(stderr, "login", co, func(c *apiClient) error {
		resp, err := c.do("POST", "/v1/login", nil)
		if err != nil {
			return err
		}
		b, err := readAnswer(resp)
		if err != nil {
			return err
		}
		var ans struct {
			URL     string    `json:"url"`
			Expires time.Time `json:"expires"`
		}
		if err := json.Unmarshal(b, &ans); err != nil {
			return err
		}
		fmt.Fprintln(stdout, ans.URL)
		fmt.Fprintf(stderr, "Open this link in a browser before %s; it works once and then keeps the browser signed in for 12 hours.\n",
			ans.Expires.Local().Format("15:04:05"))
		return nil
	})
}

func runEvents(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("events", stderr, "[--after N] [--follow] [--ack]")
	co := clientFlags(fs)
	after := fs.Uint64("after", 0, "print events after this event ID")
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	ack := fs.Bool("ack", false, "acknowledge printed events, so the daemon deletes them")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return clientCall(stderr, "events", co, func(c *apiClient) error {
		return streamEvents(c, stdout, *after, *follow, *ack)
	})
}

// streamEvents prints each event as {"eventId":N,"event":…}. Without follow it
// stops once the stream has been idle for a moment (the backlog is out).
func streamEvents(c *apiClient, stdout io.Writer, after uint64, follow, ack bool) error {
	resp, err := c.do("GET", fmt.Sprintf("/v1/events?after=%d", after), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return printJSON(resp, stdout)
	}
	lines := make(chan string)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
	}()
	var id string
	last := ""
	idle := time.NewTimer(500 * time.Millisecond)
	defer idle.Stop()
	for {
		var l string
		var ok bool
		if follow {
			l, ok = <-lines
		} else {
			select {
			case l, ok = <-lines:
				idle.Reset(500 * time.Millisecond)
			case <-idle.C:
				ok = false
			}
		}
		if !ok {
			break
		}
		switch {
		case strings.HasPrefix(l, "id: "):
			id = strings.TrimPrefix(l, "id: ")
		case strings.HasPrefix(l, "data: "):
			data := strings.TrimPrefix(l, "data: ")
			if id == "" {
				fmt.Fprintf(stdout, "%s\n", data) // a notice without an ID ("missed", "disconnected")
				continue
			}
			fmt.Fprintf(stdout, `{"eventId":%s,%s`+"\n", id, strings.TrimPrefix(data, "{"))
			last, id = id, ""
		}
	}
	if ack && last != "" {
		r, err := c.do("POST", "/v1/events/ack", json.RawMessage(`{"upTo":`+last+`}`))
		if err != nil {
			return err
		}
		_, err = readAnswer(r)
		return err
	}
	return nil
}

func clientCall(stderr io.Writer, name string, co clientOpts, f func(*apiClient) error) int {
	c, err := newAPIClient(co)
	if err == nil {
		err = f(c)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "ocapnet %s: %v (is the daemon running with --api?)\n", name, err)
		} else {
			fmt.Fprintf(stderr, "ocapnet %s: %v\n", name, err)
		}
		return 1
	}
	return 0
}
