package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// httpPeer is one `ocapnet peer --api` process and its event stream.
type httpPeer struct {
	p     *proc
	base  string
	token string
}

// httpPair is two daemons driven through the HTTP API: requests are POST
// /v1/send to A; B's SSE stream is read and each request is sent back with
// POST /v1/send to B by a pool of 200 goroutines; A's SSE stream reports the
// echoes. Events are acknowledged (POST /v1/events/ack) every 256.
type httpPair struct {
	ctx    context.Context
	cancel context.CancelFunc
	a, b   *httpPeer
	hint   string
	hinted atomic.Bool
	client *http.Client
	onEcho atomic.Value // func(int)
	echoes chan json.RawMessage
	wg     sync.WaitGroup
}

func newDaemonHTTPPair(e *env, path string) (*httpPair, error) {
	if e.o.PeerExe == "" {
		return nil, skip("the daemon pair needs the ocapnet binary (run `ocapnet bench`)")
	}
	dir := filepath.Join(e.tmp, fmt.Sprintf("daemon-http-%s-%d", path, goNodesSeq.Add(1)))
	p := &httpPair{echoes: make(chan json.RawMessage, 1<<14),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0}, Timeout: 2 * time.Minute}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.onEcho.Store(func(int) {})
	start := func(role string) (*httpPeer, error) {
		data := filepath.Join(dir, role)
		args := []string{"peer", "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--log-level", "error"}
		if path == "relay" && role == "b" {
			args = append(args, "--relay", e.rl.Addrs()[0])
		}
		pr, err := startProc(e.o.PeerExe, args, "", func([]byte) {})
		if err != nil {
			return nil, err
		}
		api, _ := pr.ready["api"].(string)
		tok, err := os.ReadFile(filepath.Join(data, "api-token"))
		if err != nil || api == "" {
			pr.close()
			return nil, fmt.Errorf("daemon API: address %q, token: %v", api, err)
		}
		return &httpPeer{p: pr, base: "http://" + api, token: strings.TrimSpace(string(tok))}, nil
	}
	var err error
	if p.b, err = start("b"); err != nil {
		return nil, err
	}
	if p.a, err = start("a"); err != nil {
		p.b.p.close()
		return nil, err
	}
	if p.hint, err = peerHint(e, path, p.b.p); err != nil {
		p.close()
		return nil, err
	}
	aID := p.a.p.peerID()
	p.wg.Add(2)
	go p.events(p.b, func(method string, params json.RawMessage) {
		if method == "req" {
			select {
			case p.echoes <- params:
			case <-p.ctx.Done():
			}
		}
	})
	go p.events(p.a, func(method string, params json.RawMessage) {
		if k, ok := parseEcho(params); ok && method == "echo" {
			p.onEcho.Load().(func(int))(k)
		}
	})
	for range 200 {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case params := <-p.echoes:
					_ = p.post(p.b, "/v1/send", map[string]any{"to": aID, "method": "echo", "params": params}) // a failed echo shows as a timeout
				case <-p.ctx.Done():
					return
				}
			}
		}()
	}
	return p, nil
}

func (p *httpPair) post(h *httpPeer, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(p.ctx, http.MethodPost, h.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", path, res.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// events reads h's SSE stream until the pair closes, reconnecting after
// the last event seen, and acknowledges every 256 events.
func (p *httpPair) events(h *httpPeer, on func(method string, params json.RawMessage)) {
	defer p.wg.Done()
	last := uint64(0)
	acked := uint64(0)
	for p.ctx.Err() == nil {
		req, err := http.NewRequestWithContext(p.ctx, http.MethodGet, h.base+"/v1/events?after="+strconv.FormatUint(last, 10), nil)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+h.token)
		res, err := (&http.Client{Transport: p.client.Transport}).Do(req)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // reconnect delay
			continue
		}
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case bytes.HasPrefix(line, []byte("id: ")):
				if id, err := strconv.ParseUint(string(line[4:]), 10, 64); err == nil {
					last = id
				}
			case bytes.HasPrefix(line, []byte("data: ")):
				var ev lineEvent
				if json.Unmarshal(line[6:], &ev) == nil && ev.Event == "message" {
					on(ev.Method, ev.Params)
				}
				if last-acked >= 256 {
					acked = last
					p.wg.Add(1)
					go func(upTo uint64) {
						defer p.wg.Done()
						_ = p.post(h, "/v1/events/ack", map[string]any{"upTo": upTo}) // best effort: the log only grows
					}(last)
				}
			}
		}
		res.Body.Close()
	}
}

func (p *httpPair) setEcho(f func(int)) { p.onEcho.Store(f) }

func (p *httpPair) request(k int) error {
	body := map[string]any{"to": p.b.p.peerID(), "method": "req", "params": json.RawMessage(echoParams(k))}
	if !p.hinted.Swap(true) {
		body["hints"] = []string{p.hint}
	}
	return p.post(p.a, "/v1/send", body)
}

func (p *httpPair) close() {
	p.cancel()
	p.a.p.close()
	p.b.p.close()
	p.wg.Wait()
}
