package main

import (
	"bufio"
	"bytes"
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
	register("send", command{summary: "send a message through a running peer daemon's API", run: runSend})
	register("peers", command{summary: "list the peers of a running peer daemon", run: runPeers})
	register("events", command{summary: "print a running peer daemon's events as JSON lines (durable stream)", run: runEvents})
}

// apiClient reaches a running daemon: the address and token come from the
// flags or from the daemon's data directory.
type apiClient struct {
	base, token string
	http        *http.Client
}

func clientFlags(fs *flag.FlagSet) (dir, api, token *string) {
	dir = fs.String("data", defaultDataDir("peer"), "the peer daemon's data directory (for its API address and token)")
	api = fs.String("api", "", "API address (default: read from the data directory)")
	token = fs.String("token", "", "API token (default: read from the data directory)")
	return
}

func newAPIClient(dir, api, token string) (*apiClient, error) {
	if api == "" {
		b, err := os.ReadFile(filepath.Join(dir, daemon.AddrFile))
		if err != nil {
			return nil, fmt.Errorf("no --api given and no running daemon's address in %s: %w", dir, err)
		}
		api = strings.TrimSpace(string(b))
	}
	if token == "" {
		b, err := os.ReadFile(filepath.Join(dir, daemon.TokenFile))
		if err != nil {
			return nil, fmt.Errorf("no --token given and none in %s: %w", dir, err)
		}
		token = strings.TrimSpace(string(b))
	}
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	return &apiClient{base: api, token: token, http: &http.Client{}}, nil
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

// printJSON copies a JSON answer to stdout as one line, or reports the
// error status.
func printJSON(resp *http.Response, stdout io.Writer) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s", resp.Status)
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(b))
	return nil
}

func runSend(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", stderr, "--to PEER --method M [--params JSON] [--hint MA ...] [--id JSON]")
	dir, api, token := clientFlags(fs)
	to := fs.String("to", "", "recipient peer ID (required)")
	method := fs.String("method", "", "method name (required)")
	params := fs.String("params", "", "params as JSON (carried verbatim)")
	id := fs.String("id", "", "request ID as JSON, echoed in the answer and the acked event")
	var hints listFlag
	fs.Var(&hints, "hint", "location hint multiaddr (repeatable)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *to == "" || *method == "" {
		fmt.Fprintln(stderr, "ocapnet send: --to and --method are required")
		fs.Usage()
		return 2
	}
	body := map[string]any{"to": *to, "method": *method, "hints": []string(hints)}
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
	return clientCall(stderr, "send", *dir, *api, *token, func(c *apiClient) error {
		resp, err := c.do("POST", "/v1/send", body)
		if err != nil {
			return err
		}
		return printJSON(resp, stdout)
	})
}

func runPeers(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("peers", stderr, "[--data DIR | --api ADDR --token T]")
	dir, api, token := clientFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return clientCall(stderr, "peers", *dir, *api, *token, func(c *apiClient) error {
		resp, err := c.do("GET", "/v1/peers", nil)
		if err != nil {
			return err
		}
		return printJSON(resp, stdout)
	})
}

func runEvents(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("events", stderr, "[--after N] [--follow] [--ack]")
	dir, api, token := clientFlags(fs)
	after := fs.Uint64("after", 0, "print events after this event ID")
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	ack := fs.Bool("ack", false, "acknowledge printed events, so the daemon deletes them")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return clientCall(stderr, "events", *dir, *api, *token, func(c *apiClient) error {
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
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var id string
	last := ""
	for {
		var l string
		var ok bool
		if follow {
			l, ok = <-lines
		} else {
			select {
			case l, ok = <-lines:
			case <-time.After(500 * time.Millisecond):
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
			fmt.Fprintf(stdout, `{"eventId":%s,%s`+"\n", id, strings.TrimPrefix(data, "{"))
			last = id
		}
	}
	if ack && last != "" {
		r, err := c.do("POST", "/v1/events/ack", json.RawMessage(`{"upTo":`+last+`}`))
		if err != nil {
			return err
		}
		return printJSON(r, io.Discard)
	}
	return nil
}

func clientCall(stderr io.Writer, name, dir, api, token string, f func(*apiClient) error) int {
	c, err := newAPIClient(dir, api, token)
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
