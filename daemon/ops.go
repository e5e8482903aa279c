package daemon

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/wire"
)

type sentAnswer struct {
	Event string          `json:"event"` // "sent"
	ID    json.RawMessage `json:"id,omitempty"`
	To    string          `json:"to"`
	Seq   uint64          `json:"seq"`
}

// checkSize refuses a send that can never fit the frame limit before
// anything of its request is sent: its envelope with the smallest sequence
// number and no acknowledgement (the node applies the exact rule, with the
// sequence number it assigns).
func (d *Daemon) checkSize(r request) error {
	limit := d.n.Transport().MaxMessageSize()
	if size := wire.EnvelopeSize(wire.Envelope{Seq: 1, Method: r.Method, Params: r.Params}); size > limit {
		return fieldError("params", "message too large: its frame would be %d bytes, limit %d", size, limit)
	}
	return nil
}

// sendAll sends reqs (all "send") in one group commit with node.SendBatch:
// per-peer order is the order of reqs. With hold, the peers'
// acknowledgements wait until the caller released them after its answers
// (releaseAcks). It returns the results and the distinct peers.
func (d *Daemon) sendAll(ctx context.Context, reqs []request, hold bool) ([]node.Result, []peer.ID) {
	ms := make([]node.Outgoing, len(reqs))
	var peers []peer.ID
	for i, r := range reqs {
		ms[i] = node.Outgoing{To: r.To, Method: r.Method, Params: r.Params, Hints: r.Hints, Tag: r.ID}
		if !slices.Contains(peers, r.To) {
			peers = append(peers, r.To)
		}
	}
	if hold {
		d.holdAcks(peers)
	}
	return d.n.SendBatch(ctx, ms), peers
}

// runOp runs every op but send and returns its answer.
func (d *Daemon) runOp(r request) (any, error) {
	switch r.Op {
	case "peers":
		return struct {
			Event string          `json:"event"`
			ID    json.RawMessage `json:"id,omitempty"`
			Peers []peerStatus    `json:"peers"`
		}{"peers", r.ID, d.peers()}, nil
	case "info":
		inf := d.Info()
		inf.Event, inf.ID = "info", r.ID
		return inf, nil
	case "export", "resolve", "redeem", "call":
		return d.kernelOp(d.kctx, r)
	case "wake":
		// What the wake detector does after a sleep: reset every backoff
		// and cut waits short. A hook for tests and for hosts that learn
		// about resume from the OS.
		d.n.Transport().ResetBackoffs()
		return struct {
			Event string          `json:"event"`
			ID    json.RawMessage `json:"id,omitempty"`
		}{"woke", r.ID}, nil
	default:
		return d.peerOp(r)
	}
}

type peerResult struct {
	Event    string            `json:"event"`
	ID       json.RawMessage   `json:"id,omitempty"`
	Peer     string            `json:"peer"`
	Count    *int              `json:"count,omitempty"`
	Messages []undeliveredJSON `json:"messages,omitempty"`
}

func (d *Daemon) peerOp(r request) (any, error) {
	p := r.Peer
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
		for _, u := range us {
			d.acks.settleOne(p, u.Seq, "forgotten")
		}
		res.Messages = undeliveredList(us)
		res.Count = ptr(len(us))
		return res, err
	}
}

func ptr[T any](v T) *T { return &v }

// peerStatus is one peer in a "peers" answer.
type peerStatus struct {
	Peer      string    `json:"peer"`
	State     string    `json:"state"`
	Attempt   int       `json:"attempt,omitempty"`
	NextRetry time.Time `json:"nextRetry,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	// LastErrorLine is LastError summed up on one line.
	LastErrorLine string `json:"lastErrorLine,omitempty"`
	RemoteAddr    string `json:"remoteAddr,omitempty"`
	NextSeq       uint64 `json:"nextSeq"`
	Acked         uint64 `json:"acked"`
	Unacked       int    `json:"unacked"`
	Parked        int    `json:"parked"`
	Delivered     uint64 `json:"delivered"`
	// Since is when the peer entered State (repeated reconnection attempts
	// do not move it).
	Since time.Time `json:"since,omitzero"`
}

func (d *Daemon) peers() []peerStatus {
	out := []peerStatus{}
	for _, p := range d.n.Peers() {
		st := p.State.String()
		since := p.Since
		if s, ok := d.watch.since(p.ID, st); ok {
			since = s
		}
		out = append(out, peerStatus{p.ID.String(), st, p.Attempt, p.NextRetry, p.LastError, oneLine(p.LastError), p.RemoteAddr,
			p.NextSeq, p.Acked, p.Unacked, p.Parked, p.Delivered, since})
	}
	return out
}
