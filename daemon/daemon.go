// Package daemon is the peer daemon around a node: programs in any language
// drive it through JSON lines on stdin/stdout (--stdio) or an HTTP API with a
// durable server-sent event stream (--api). Both speak the same JSON objects
// (docs/DAEMON.md).
package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// Options configures a daemon.
type Options struct {
	// Node configures the node; its Transport.Metrics is set by the daemon.
	Node node.Options
	// Out, when set, receives every event as one JSON line (--stdio).
	Out io.Writer
	// API, when set, is the address of the HTTP API (--api). It must be a
	// loopback address unless AllowRemote.
	API         string
	AllowRemote bool
	// Logger receives the daemon's logs. Default: discard.
	Logger *slog.Logger
}

// Daemon is a running peer daemon.
type Daemon struct {
	n    *node.Node
	log  *slog.Logger
	out  *lineWriter
	reg  *prometheus.Registry
	api  *apiServer
	feed *feed

	// "acked" comes after "sent": while a send to a peer is in flight (its
	// "sent" line not yet written), that peer's acknowledgements wait in
	// held. The request ID travels with the message as its node tag, so an
	// "acked" carries it even after a restart.
	mu       sync.Mutex
	inflight map[peer.ID]int
	held     map[peer.ID][]ackedEvent
}

// Start starts the node and, if configured, the HTTP API.
func Start(ctx context.Context, o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{log: o.Logger, reg: prometheus.NewRegistry(), inflight: map[peer.ID]int{}, held: map[peer.ID][]ackedEvent{}}
	if o.Out != nil {
		d.out = &lineWriter{w: o.Out, gate: make(chan struct{})}
	}
	if o.API != "" {
		if err := checkAPIAddr(o.API, o.AllowRemote); err != nil {
			return nil, err
		}
		d.feed = newFeed()
	}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.Node.Transport.Metrics = d.reg
	if o.Node.Logger == nil {
		o.Node.Logger = o.Logger
	}
	n, err := node.Start(ctx, o.Node, node.Handler{OnMessage: d.onMessage, OnEvent: d.onEvent})
	if err != nil {
		return nil, err
	}
	d.n = n
	if d.feed != nil {
		d.feed.st = n.Store()
		api, err := startAPI(d, o.API)
		if err != nil {
			n.Stop(ctx)
			return nil, err
		}
		d.api = api
	}
	return d, nil
}

// Node returns the daemon's node.
func (d *Daemon) Node() *node.Node { return d.n }

// APIAddr returns the API's listen address ("" without --api).
func (d *Daemon) APIAddr() string {
	if d.api == nil {
		return ""
	}
	return d.api.addr
}

// Ready is the first line the daemon prints.
type Ready struct {
	Event       string   `json:"event"`
	PeerID      string   `json:"peerId"`
	Addrs       []string `json:"addrs"`
	Incarnation string   `json:"incarnationId"`
	API         string   `json:"api,omitempty"`
	DataDir     string   `json:"dataDir"`
}

// Ready returns the ready line's contents.
func (d *Daemon) Ready() Ready {
	return Ready{Event: "ready", PeerID: d.n.PeerID().String(), Addrs: d.n.ListenAddrs(), Incarnation: d.n.IncarnationID(),
		API: d.APIAddr(), DataDir: d.n.Store().Dir()}
}

// WriteReady prints the ready line on w and opens the stdio output, which
// holds every other line (and so the deliveries, by backpressure) until the
// ready line is out.
func (d *Daemon) WriteReady(w io.Writer) error {
	b, err := json.Marshal(d.Ready())
	if err != nil {
		return err
	}
	if d.out != nil && d.out.w == w {
		d.out.mu.Lock()
		_, err = w.Write(append(b, '\n'))
		d.out.mu.Unlock()
		close(d.out.gate)
		return err
	}
	_, err = w.Write(append(b, '\n'))
	if d.out != nil {
		close(d.out.gate)
	}
	return err
}

// Stop stops the API and the node.
func (d *Daemon) Stop(ctx context.Context) error {
	var errs []error
	if d.api != nil {
		errs = append(errs, d.api.stop(ctx))
	}
	if d.feed != nil {
		d.feed.close()
	}
	errs = append(errs, d.n.Stop(ctx))
	return errors.Join(errs...)
}

// emit publishes an event to the stdio output and the API's durable feed.
// A received message counts as delivered (and is acknowledged to its sender)
// only after emit returned, so nothing is acknowledged that is not written
// out or stored.
func (d *Daemon) emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if d.out != nil {
		if err := d.out.writeRaw(b); err != nil {
			return err
		}
	}
	if d.feed != nil {
		return d.feed.append(b)
	}
	return nil
}

// Event shapes (JSON objects, one per line on stdout and in the SSE stream).

type messageEvent struct {
	Event      string          `json:"event"` // "message"
	From       string          `json:"from"`
	Seq        uint64          `json:"seq"`
	Method     string          `json:"method"`
	Params     json.RawMessage `json:"params,omitempty"`
	Redelivery bool            `json:"redelivery"`
}

type peerEvent struct {
	Event      string    `json:"event"` // "peer"
	Peer       string    `json:"peer"`
	State      string    `json:"state"`
	Attempt    int       `json:"attempt,omitempty"`
	NextRetry  time.Time `json:"nextRetry,omitzero"`
	LastError  string    `json:"lastError,omitempty"`
	RemoteAddr string    `json:"remoteAddr,omitempty"`
}

type undeliveredJSON struct {
	Seq    uint64          `json:"seq"`
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

func undeliveredList(us []node.Undelivered) []undeliveredJSON {
	out := make([]undeliveredJSON, len(us))
	for i, u := range us {
		out[i] = undeliveredJSON{u.Seq, u.Tag, u.Method, u.Params}
	}
	return out
}

type ackedEvent struct {
	Event string          `json:"event"` // "acked"
	ID    json.RawMessage `json:"id,omitempty"`
	To    string          `json:"to"`
	Seq   uint64          `json:"seq"`
}

// onMessage hands a received message to the consumer; if it cannot be
// written or stored, the node does not count it as delivered, so it is not
// acknowledged and the sender offers it again.
func (d *Daemon) onMessage(m node.Message) error {
	return d.emit(messageEvent{"message", m.From.String(), m.Seq, m.Method, m.Params, m.Redelivery})
}

func (d *Daemon) onEvent(e node.Event) {
	var v any
	switch e := e.(type) {
	case node.StateChanged:
		v = peerEvent{"peer", e.Peer.ID.String(), e.Peer.State.String(), e.Peer.Attempt, e.Peer.NextRetry, e.Peer.LastError, e.Peer.RemoteAddr}
	case node.Acknowledged:
		evs := make([]ackedEvent, 0, e.To-e.From+1)
		for s := e.From; s <= e.To; s++ {
			evs = append(evs, ackedEvent{"acked", e.Tags[s], e.Peer.String(), s})
		}
		d.mu.Lock()
		if d.inflight[e.Peer] > 0 {
			d.held[e.Peer] = append(d.held[e.Peer], evs...)
			evs = nil
		}
		d.mu.Unlock()
		for _, a := range evs {
			d.emitLogged(a)
		}
		return
	case node.GaveUp:
		v = struct {
			Event    string            `json:"event"`
			Peer     string            `json:"peer"`
			Reason   string            `json:"reason"`
			Messages []undeliveredJSON `json:"messages"`
		}{"giveup", e.Peer.String(), e.Reason.Error(), undeliveredList(e.Messages)}
	case node.Gap:
		v = struct {
			Event string `json:"event"`
			Peer  string `json:"peer"`
			From  uint64 `json:"from"`
			To    uint64 `json:"to"`
		}{"gap", e.Peer.String(), e.From, e.To}
	case node.PeerRestarted:
		v = struct {
			Event    string `json:"event"`
			Peer     string `json:"peer"`
			Previous string `json:"previous"`
			Current  string `json:"current"`
		}{"restarted", e.Peer.String(), e.Previous, e.Current}
	case node.WakeDetected:
		v = struct {
			Event         string `json:"event"`
			GapMs         int64  `json:"gapMs"`
			AcrossRestart bool   `json:"acrossRestart"`
		}{"wake", e.Gap.Milliseconds(), e.AcrossRestart}
	default:
		return
	}
	d.emitLogged(v)
}

func (d *Daemon) emitLogged(v any) {
	if err := d.emit(v); err != nil {
		d.log.Error("writing an event failed", "err", err)
	}
}

// request is one input line (stdio) or API call.
type request struct {
	Op     string          `json:"op"`
	ID     json.RawMessage `json:"id,omitempty"`
	To     string          `json:"to,omitempty"`
	Peer   string          `json:"peer,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Hints  []string        `json:"hints,omitempty"`
}

type errorEvent struct {
	Event string          `json:"event"` // "error"
	ID    json.RawMessage `json:"id,omitempty"`
	Op    string          `json:"op,omitempty"`
	Error string          `json:"error"`
}

// ErrBadRequest marks errors in a request (as opposed to the node's errors).
var ErrBadRequest = errors.New("bad request")

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
}

func parsePeer(s, field string) (peer.ID, error) {
	if s == "" {
		return "", badRequest("%q is required", field)
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", badRequest("%q: invalid peer ID %q: %v", field, s, err)
	}
	return id, nil
}

// do runs a request and returns the event that answers it, and events to
// publish after it.
func (d *Daemon) do(ctx context.Context, r request) (res any, after []any, err error) {
	switch r.Op {
	case "send":
		to, err := parsePeer(r.To, "to")
		if err != nil {
			return nil, nil, err
		}
		if r.Method == "" {
			return nil, nil, badRequest(`"method" is required`)
		}
		d.mu.Lock()
		d.inflight[to]++
		d.mu.Unlock()
		seq, err := d.n.SendMessage(ctx, node.Outgoing{To: to, Method: r.Method, Params: r.Params, Hints: r.Hints, Tag: r.ID})
		d.mu.Lock()
		if d.inflight[to]--; d.inflight[to] == 0 {
			delete(d.inflight, to)
			for _, a := range d.held[to] {
				after = append(after, a) // written after this "sent"
			}
			delete(d.held, to)
		}
		d.mu.Unlock()
		if err != nil {
			return nil, nil, err
		}
		return struct {
			Event string          `json:"event"`
			ID    json.RawMessage `json:"id,omitempty"`
			To    string          `json:"to"`
			Seq   uint64          `json:"seq"`
		}{"sent", r.ID, to.String(), seq}, after, nil
	case "peers":
		return struct {
			Event string          `json:"event"`
			ID    json.RawMessage `json:"id,omitempty"`
			Peers []peerStatus    `json:"peers"`
		}{"peers", r.ID, d.peers()}, nil, nil
	case "wake":
		// What the wake detector does after a sleep: reset every backoff
		// and cut waits short. A hook for tests and for hosts that learn
		// about resume from the OS.
		d.n.Transport().ResetBackoffs()
		return struct {
			Event string          `json:"event"`
			ID    json.RawMessage `json:"id,omitempty"`
		}{"woke", r.ID}, nil, nil
	case "close", "reconnect", "parked", "resend", "discard", "forget":
		p, err := parsePeer(r.Peer, "peer")
		if err != nil {
			return nil, nil, err
		}
		res, err := d.peerOp(r, p)
		return res, nil, err
	case "":
		return nil, nil, badRequest(`"op" is required`)
	default:
		return nil, nil, badRequest("unknown op %q (send, close, reconnect, peers, parked, resend, discard, forget, wake)", r.Op)
	}
}

type peerResult struct {
	Event    string            `json:"event"`
	ID       json.RawMessage   `json:"id,omitempty"`
	Peer     string            `json:"peer"`
	Count    *int              `json:"count,omitempty"`
	Messages []undeliveredJSON `json:"messages,omitempty"`
}

func (d *Daemon) peerOp(r request, p peer.ID) (any, error) {
	res := peerResult{ID: r.ID, Peer: p.String()}
	switch r.Op {
	case "close":
		res.Event = "closed"
		return res, d.n.Close(p)
	case "reconnect":
		res.Event = "reconnecting"
		return res, d.n.Reconnect(p, r.Hints...)
	case "parked":
		res.Event = "parked"
		us, err := d.n.Parked(p)
		res.Messages = undeliveredList(us)
		res.Count = ptr(len(us))
		return res, err
	case "resend", "discard":
		res.Event = map[string]string{"resend": "resent", "discard": "discarded"}[r.Op]
		f := d.n.Resend
		if r.Op == "discard" {
			f = d.n.Discard
		}
		k, err := f(p)
		res.Count = &k
		return res, err
	default: // forget
		res.Event = "forgotten"
		us, err := d.n.Forget(p)
		res.Messages = undeliveredList(us)
		res.Count = ptr(len(us))
		return res, err
	}
}

func ptr[T any](v T) *T { return &v }

// peerStatus is one peer in a "peers" answer.
type peerStatus struct {
	Peer       string    `json:"peer"`
	State      string    `json:"state"`
	Attempt    int       `json:"attempt,omitempty"`
	NextRetry  time.Time `json:"nextRetry,omitzero"`
	LastError  string    `json:"lastError,omitempty"`
	RemoteAddr string    `json:"remoteAddr,omitempty"`
	NextSeq    uint64    `json:"nextSeq"`
	Acked      uint64    `json:"acked"`
	Unacked    int       `json:"unacked"`
	Parked     int       `json:"parked"`
	Delivered  uint64    `json:"delivered"`
	Since      time.Time `json:"since,omitzero"`
}

func (d *Daemon) peers() []peerStatus {
	var out []peerStatus
	for _, p := range d.n.Peers() {
		out = append(out, peerStatus{p.ID.String(), p.State.String(), p.Attempt, p.NextRetry, p.LastError, p.RemoteAddr,
			p.NextSeq, p.Acked, p.Unacked, p.Parked, p.Delivered, p.Since})
	}
	return out
}

// ServeStdio reads request lines from in until it ends or ctx is done,
// answering each on the stdio output. A bad line gets an error event and
// reading continues. Lines longer than maxLine are refused whole.
func (d *Daemon) ServeStdio(ctx context.Context, in io.Reader) error {
	maxLine := 4 * d.maxMessage()
	br := bufio.NewReaderSize(in, 64<<10)
	for ctx.Err() == nil {
		line, tooLong, err := readLine(br, maxLine)
		if len(bytes.TrimSpace(line)) > 0 || tooLong {
			d.handleLine(ctx, line, tooLong, maxLine)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
	return ctx.Err()
}

func (d *Daemon) maxMessage() int {
	return d.n.Transport().MaxMessageSize()
}

func (d *Daemon) handleLine(ctx context.Context, line []byte, tooLong bool, maxLine int) {
	if tooLong {
		d.emitLogged(errorEvent{Event: "error", Error: fmt.Sprintf("input line longer than %d bytes: ignored", maxLine)})
		return
	}
	var r request
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&r); err != nil {
		d.emitLogged(errorEvent{Event: "error", Error: "malformed JSON line: " + err.Error()})
		return
	}
	res, after, err := d.do(ctx, r)
	if err != nil {
		d.emitLogged(errorEvent{Event: "error", ID: r.ID, Op: r.Op, Error: err.Error()})
	} else {
		d.emitLogged(res)
	}
	for _, e := range after {
		d.emitLogged(e)
	}
}

// readLine reads one line of at most max bytes; a longer line is consumed
// and reported as tooLong.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, tooLong, err
	}
}

// lineWriter writes one JSON object per line in one unbuffered write; safe
// for concurrent use.
type lineWriter struct {
	mu   sync.Mutex
	w    io.Writer
	gate chan struct{} // nil or closed: open
}

func (l *lineWriter) writeRaw(b []byte) error {
	if l.gate != nil {
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(append(b[:len(b):len(b)], '\n'))
	return err
}

// errorStatus maps an error to an HTTP status.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, transport.ErrInvalidPeer), errors.Is(err, node.ErrInvalidMessage),
		errors.Is(err, transport.ErrMessageTooLarge):
		return 400
	case errors.Is(err, node.ErrPeerDenied):
		return 403
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
