package daemon

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/endpoint"
	"github.com/ocapnet/ocapnet/node"
)

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
	// Since is when the peer entered State (repeated reports of one state
	// keep it).
	Since time.Time `json:"since,omitzero"`
	// Reports is how many state reports this event stands for, when
	// several were coalesced into it (omitted for one).
	Reports int `json:"reports,omitempty"`
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

// cumulativeAck is the "acked" event of CumulativeAcks: every message to To
// from FromSeq to Seq was acknowledged; IDs are the ids of those sent with
// one, in sequence order.
type cumulativeAck struct {
	Event   string            `json:"event"` // "acked"
	To      string            `json:"to"`
	FromSeq uint64            `json:"fromSeq"`
	Seq     uint64            `json:"seq"`
	Count   uint64            `json:"count"`
	IDs     []json.RawMessage `json:"ids"`
}

type errorEvent struct {
	Event string          `json:"event"` // "error"
	ID    json.RawMessage `json:"id,omitempty"`
	Op    string          `json:"op,omitempty"`
	Error string          `json:"error"`
	// Line is the stdio input line (1-based) the error is about.
	Line int `json:"line,omitempty"`
	// Field names the request field at fault, when one is.
	Field string `json:"field,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Every event is made of strings, numbers, times and JSON that
		// was checked on its way in.
		panic("daemon: encoding an event: " + err.Error())
	}
	return b
}

// emit publishes unprompted events: queued on the stdio output in order,
// stored in the API's durable log, then written out. A received message
// counts as delivered (and is acknowledged to its sender) only after emit
// returned nil, so nothing is acknowledged that is not written out or
// stored.
func (d *Daemon) emit(lines ...[]byte) error {
	var t ticket
	if d.out != nil {
		t = d.out.enqueue(lines...)
	}
	return d.publish(t, lines)
}

// publish stores lines in the durable log and waits for the stdio output
// up to t.
func (d *Daemon) publish(t ticket, lines [][]byte) error {
	var errs []error
	if d.elog != nil {
		for _, l := range lines {
			if _, err := d.elog.append(l); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	if d.out != nil {
		errs = append(errs, d.out.wait(t))
	}
	return errors.Join(errs...)
}

func (d *Daemon) emitLogged(lines ...[]byte) {
	if err := d.emit(lines...); err != nil {
		d.log.Error("writing an event failed", "err", err)
	}
}

// onMessage hands a received message to the consumer; if it cannot be
// written or stored, the node does not count it as delivered, so it is not
// acknowledged and the sender offers it again.
func (d *Daemon) onMessage(m node.Message) error {
	if !d.ready() {
		return errors.New("the daemon did not start")
	}
	return d.emit(messageLine(m.From, m.Seq, m.Method, m.Params, m.Redelivery))
}

// onEvent translates the node's events, in order, from the node's event
// goroutine.
func (d *Daemon) onEvent(e node.Event) {
	if !d.ready() {
		return
	}
	d.evMu.Lock()
	defer d.evMu.Unlock()
	var v any
	switch e := e.(type) {
	case node.StateChanged:
		if ev := d.watch.report(e.Peer, time.Now()); ev != nil {
			v = ev
		}
	case node.Acknowledged:
		d.acks.settle(e.Peer, e.From, e.To, "")
		d.onAcked(e)
		return
	case node.GaveUp:
		for _, m := range e.Messages {
			d.acks.settleOne(e.Peer, m.Seq, "gave up: "+e.Reason.Error())
		}
		d.log.Warn("gave up on messages: parked until resend or discard", "peer", e.Peer, "count", len(e.Messages), "reason", e.Reason)
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
	case node.Stalled:
		d.log.Warn("peer acknowledges nothing while its link is up", "peer", e.Peer, "unacked", e.Unacked, "since", e.Since, "rounds", e.Rounds)
		v = struct {
			Event   string    `json:"event"`
			Peer    string    `json:"peer"`
			Unacked int       `json:"unacked"`
			Since   time.Time `json:"since"`
			Rounds  int       `json:"rounds"`
		}{"stalled", e.Peer.String(), e.Unacked, e.Since, e.Rounds}
	case node.StallEnded:
		v = struct {
			Event      string `json:"event"`
			Peer       string `json:"peer"`
			DurationMs int64  `json:"durationMs"`
		}{"stall-ended", e.Peer.String(), e.Duration.Milliseconds()}
	case node.WakeDetected:
		v = struct {
			Event         string `json:"event"`
			GapMs         int64  `json:"gapMs"`
			AcrossRestart bool   `json:"acrossRestart"`
		}{"wake", e.Gap.Milliseconds(), e.AcrossRestart}
	}
	if v != nil {
		d.emitLogged(mustJSON(v))
	}
}

// ackLines returns the "acked" lines of an acknowledgement.
func (d *Daemon) ackLines(e node.Acknowledged) [][]byte {
	if d.opts.CumulativeAcks {
		ids := []json.RawMessage{}
		for s := e.From; s <= e.To; s++ {
			if t := e.Tags[s]; t != nil && !endpoint.IsFrameTag(t) {
				ids = append(ids, t)
			}
		}
		return [][]byte{mustJSON(cumulativeAck{"acked", peerString(e.Peer), e.From, e.To, e.To - e.From + 1, ids})}
	}
	lines := make([][]byte, 0, e.To-e.From+1)
	for s := e.From; s <= e.To; s++ {
		if endpoint.IsFrameTag(e.Tags[s]) {
			continue // the kernel endpoint's own frame, not a send of the client
		}
		lines = append(lines, seqEvent("acked", e.Tags[s], e.Peer, s))
	}
	return lines
}

// onAcked publishes an acknowledgement. "acked" comes after "sent" on the
// stdio output: while a stdio send to the peer is in flight (its "sent"
// line not yet queued), the peer's acknowledgements wait in held, and the
// send queues them right after its answers. The request ID travels with the
// message as its node tag, so an "acked" carries it even after a restart.
func (d *Daemon) onAcked(e node.Acknowledged) {
	lines := d.ackLines(e)
	d.mu.Lock()
	if d.inflight[e.Peer] > 0 {
		d.held[e.Peer] = append(d.held[e.Peer], lines...)
		d.mu.Unlock()
		return
	}
	var t ticket
	if d.out != nil {
		t = d.out.enqueue(lines...)
	}
	d.mu.Unlock()
	if err := d.publish(t, lines); err != nil {
		d.log.Error("writing an event failed", "err", err)
	}
}

// holdAcks marks stdio sends to these peers as in flight.
func (d *Daemon) holdAcks(peers []peer.ID) {
	d.mu.Lock()
	for _, p := range peers {
		d.inflight[p]++
	}
	d.mu.Unlock()
}

// releaseAcks ends the in-flight sends to peers: it queues answers on the
// stdio output and after them the acknowledgements held meanwhile, and
// returns the held lines (for the durable log) and the output's ticket.
func (d *Daemon) releaseAcks(peers []peer.ID, answers [][]byte) (ticket, [][]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var held [][]byte
	for _, p := range peers {
		if d.inflight[p]--; d.inflight[p] > 0 {
			continue
		}
		delete(d.inflight, p)
		held = append(held, d.held[p]...)
		delete(d.held, p)
	}
	if d.out == nil {
		return 0, held
	}
	d.out.mu.Lock()
	defer d.out.mu.Unlock()
	t := d.out.enqueueLocked(answers...)
	if len(held) > 0 {
		t = d.out.enqueueLocked(held...)
	}
	return t, held
}
