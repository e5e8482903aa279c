// Package node is the layer applications use: durable, exactly-once,
// in-order messaging between ocap kernels over package transport, with the
// state kept in a data directory (package store).
//
// Send returns once the message is fsync'd in the peer's outbound log (group
// commit). Messages carry sequence numbers and cumulative acknowledgements in
// upstream's envelope (reference §2.4), so a JavaScript kernel can be the
// other end. The receiver delivers only the next sequence number; the sender
// retransmits its unacknowledged window at once on every new channel and
// after an ack timeout, and never gives up by default. docs/DELIVERY.md
// states the exact guarantee.
//
// The node owns delivery state (sequence numbers, acknowledgements, the
// window, parked messages, inbound positions, persisted incarnations); the
// transport owns link state. The node learns of link changes synchronously
// through the transport's Handler (a new channel with its generation, a link
// that ended) and queries the transport for the rest; it never keeps a copy.
//
// A message's way, by file: send.go (Send: window, admission, durable
// append) → pump.go (the per-peer pump writes envelopes with TrySendOn on the
// generation it learnt in onChannel; retransmission; acknowledgements
// received) → the peer's receive.go (onFrame: order, duplicates, gaps,
// intent, the application's handler, acknowledgements sent). link.go handles
// the ends of links (give-up and parking), restart.go a peer that lost its
// state, peerops.go the operations on one peer (Close, Reconnect, Resend,
// Discard, Forget, Peers), idle.go the idle-peer cap.
//
// Concurrency. Node.mu guards the peer table and every peer's delivery
// state. Per peer, recvMu serialises inbound processing with a restart's
// reset, and sendMu orders Sends against operations that park or renumber
// the log. Lock order, across packages (each arrow: may be held while
// taking the next): transport deliverMu (held while onFrame runs, and so
// while the application's OnMessage runs) → node recvMu → transport linkMu
// (held while onChannel and onLinkEnded run; an OnMessage may call Close) →
// node sendMu → node mu → transport mu. The node calls transport methods
// that take linkMu or sendSem (Send, TrySend(On), Close, Reconnect) only
// without holding sendMu or mu; under mu it calls only SetPinned, Peer and
// other snapshot methods, which take the transport's mu alone. Every
// goroutine the node starts is counted in Node.wg and has ended when Stop
// returns.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/internal/eventq"
	"github.com/ocapnet/ocapnet/internal/logsum"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// Node is a running node. Create it with Start; stop it with Stop.
type Node struct {
	opts  Options
	h     Handler
	log   *slog.Logger
	sum   *logsum.Logger // per-peer and per-frame lines, summarised
	st    *store.Store
	tr    *transport.Transport // set before ready is closed
	self  peer.ID
	inc   string
	allow map[peer.ID]bool
	deny  map[peer.ID]bool

	events  *eventq.Queue[Event]
	metrics *metrics

	ready    chan struct{} // closed when Start has resumed every stored peer (or failed)
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // every goroutine the node starts, but the event queue's
	evWG     sync.WaitGroup // the event queue's goroutine
	stopOnce sync.Once
	stopDone chan struct{} // closed when the work of the first Stop has ended
	stopErr  error         // set before stopDone is closed

	hintWork atomic.Int64 // hint lists parsed or registered by Sends (a test checks repeated hints cost nothing)

	mu      sync.Mutex // guards the following fields and every peerState's delivery state
	stopped bool
	peers   map[peer.ID]*peerState
}

// Start opens the data directory, loads or creates the identity, starts the
// transport and resumes every conversation left in the log: peers with
// pending messages are dialled at once.
func Start(ctx context.Context, opts Options, h Handler) (*Node, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(opts.Dir, opts.Store)
	if err != nil {
		return nil, err
	}
	n := &Node{
		opts:     opts,
		h:        h,
		log:      opts.Logger,
		sum:      logsum.New(opts.Logger, 0),
		st:       st,
		peers:    map[peer.ID]*peerState{},
		allow:    map[peer.ID]bool{},
		deny:     map[peer.ID]bool{},
		ready:    make(chan struct{}),
		stopDone: make(chan struct{}),
	}
	for _, p := range opts.Allow {
		n.allow[p] = true
	}
	for _, p := range opts.Deny {
		n.deny[p] = true
	}
	id, weak, err := LoadIdentity(st, opts.KeySeed, opts.Mnemonic)
	if weak {
		n.log.Warn("key seed is shorter than 64 hex digits: anyone can derive it")
	}
	if err != nil {
		n.abortStart()
		return nil, err
	}
	n.inc = id.IncarnationID
	var lastActive time.Time
	if err := st.View(func(tx *store.Tx) error {
		lastActive, err = tx.LastActive()
		return err
	}); err != nil {
		n.abortStart()
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.events = eventq.New(h.OnEvent, &n.evWG)
	n.metrics = newMetrics(opts.Transport.Metrics)
	n.metrics.window = n.windowTotals

	seed, err := identity.ParseSeedHex(id.KeySeed)
	if err != nil {
		n.abortStart()
		return nil, fmt.Errorf("node: stored key seed: %w", err)
	}
	tr, err := transport.Start(ctx, transport.Options{KeySeed: seed, IncarnationID: id.IncarnationID, Config: opts.Transport},
		transport.Handler{
			OnMessage:   n.onFrame,
			OnHandshake: n.onHandshake,
			OnChannel:   n.onChannel,
			OnLinkEnded: n.onLinkEnded,
			Known:       n.known,
			OnEvent:     n.onTransportEvent,
		})
	if err != nil {
		n.abortStart()
		return nil, err
	}
	n.tr = tr
	n.self = tr.PeerID()
	if err := n.resume(lastActive); err != nil {
		close(n.ready)
		n.Stop(context.Background())
		return nil, err
	}
	close(n.ready)
	n.wg.Add(1)
	go n.activityLoop()
	return n, nil
}

// abortStart undoes a Start that failed before the transport ran.
func (n *Node) abortStart() {
	if n.cancel != nil {
		n.cancel()
		n.events.Close()
		n.evWG.Wait()
	}
	n.sum.Stop()
	n.st.Close()
}

// await waits until Start is done; the transport's callbacks, which can come
// as soon as it listens, call it first. It reports false if the node is
// stopping.
func (n *Node) await() bool {
	<-n.ready
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.stopped
}

// LoadIdentity returns the identity stored in st, creating it on first use
// from seedHex, mnemonic (at most one) or a random seed, with a fresh
// incarnation ID. A seed or mnemonic that gives a different key than the
// stored one is refused with ErrIdentityMismatch. weak reports a seed shorter
// than 64 hex digits. The relay command uses it too.
func LoadIdentity(st *store.Store, seedHex, mnemonic string) (id store.Identity, weak bool, err error) {
	var want *identity.Seed
	switch {
	case seedHex != "" && mnemonic != "":
		return id, false, errors.New("give a key seed or a mnemonic, not both")
	case seedHex != "":
		s, err := identity.ParseSeedHex(seedHex)
		if err != nil {
			return id, false, err
		}
		weak = identity.IsWeakSeedHex(seedHex)
		want = &s
	case mnemonic != "":
		s, err := identity.SeedFromMnemonic(mnemonic)
		if err != nil {
			return id, false, err
		}
		want = &s
	}
	err = st.Update(func(tx *store.Tx) error {
		cur, ok, err := tx.Identity()
		if err != nil {
			return err
		}
		if ok {
			if want != nil && cur.KeySeed != want.Hex() {
				return fmt.Errorf("%w: %s holds peer %s, the given key is peer %s", ErrIdentityMismatch, st.Dir(), cur.PeerID, want.PeerID())
			}
			id = cur
			return nil
		}
		seed := want
		if seed == nil {
			s, err := identity.RandomSeed()
			if err != nil {
				return err
			}
			seed = &s
		}
		id = store.Identity{KeySeed: seed.Hex(), PeerID: seed.PeerID().String(), IncarnationID: identity.NewIncarnationID()}
		return tx.SetIdentity(id)
	})
	return id, weak, err
}

// resume reads every stored peer's record (not its log: the pumps page the
// log when a channel is up), keeps in memory the peers with unacknowledged
// or parked messages, dials those with messages to send, restores failure
// states and applies the cross-restart wake rule. Other peers are loaded on
// first contact. Its cost grows with the number of peers, not with the
// backlog.
func (n *Node) resume(lastActive time.Time) error {
	now := time.Now().Round(0)
	gap := time.Duration(0)
	if !lastActive.IsZero() {
		gap = now.Sub(lastActive)
	}
	clearFailures := gap > n.opts.ClearFailuresAfter
	type loaded struct {
		id  peer.ID
		rec store.PeerRecord
	}
	var busy []loaded
	err := n.st.Update(func(tx *store.Tx) error {
		busy = busy[:0]
		var cleared []string
		err := tx.ForEachPeer(func(s string, rec store.PeerRecord) error {
			pid, err := peer.Decode(s)
			if err != nil {
				n.log.Warn("stored peer with an invalid ID: ignored", "peer", s)
				return nil
			}
			if clearFailures && !rec.FailedSince.IsZero() {
				cleared = append(cleared, s)
				rec.FailedSince = time.Time{}
			}
			// Peers with messages in flight, peers whose failure state
			// survives this start and JavaScript peers active shortly
			// before are loaded now: the first must be redelivered, the
			// second reported, the third given a channel. The rest load
			// on use.
			if rec.NextSeq > rec.Acked || !rec.FailedSince.IsZero() || recentLegacy(rec, now) {
				busy = append(busy, loaded{pid, rec})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, s := range cleared {
			rec, _, err := tx.Peer(s)
			if err != nil {
				return err
			}
			rec.FailedSince = time.Time{}
			if err := tx.PutPeer(s, rec); err != nil {
				return err
			}
		}
		return tx.SetLastActive(now)
	})
	if err != nil {
		return err
	}
	for _, l := range busy {
		if len(l.rec.Hints) > 0 {
			if err := n.tr.RegisterHints(l.id, l.rec.Hints...); err != nil {
				n.log.Warn("stored hints are not valid multiaddrs: ignored", "peer", l.id, "err", err)
			}
		}
		if !l.rec.FailedSince.IsZero() {
			n.tr.RestoreFailed(l.id, l.rec.FailedSince)
		}
		if recentLegacy(l.rec, now) {
			n.tr.PromptLegacy(l.id)
		}
	}
	n.mu.Lock()
	for _, l := range busy {
		p := newPeerState(l.id, l.rec, true, 0)
		n.peers[l.id] = p
		n.updatePinLocked(p)
	}
	n.mu.Unlock()
	if clearFailures {
		n.log.Info("started long after last activity: failure states cleared", "gap", gap)
		n.events.Push(WakeDetected{Gap: gap, AcrossRestart: true})
	}
	return nil
}

// legacyRecent: a JavaScript peer active this recently before a start may
// hold messages for us that it cannot deliver by itself (its dials are
// rate limited, docs/PROTOCOL.md "Living with the JavaScript transport").
const legacyRecent = 10 * time.Minute

func recentLegacy(rec store.PeerRecord, now time.Time) bool {
	return rec.Legacy && now.Sub(rec.LastActive) < legacyRecent
}

// PeerID returns this node's peer ID.
func (n *Node) PeerID() peer.ID { return n.self }

// IncarnationID returns this data directory's incarnation ID.
func (n *Node) IncarnationID() string { return n.inc }

// Transport returns the underlying transport (addresses, relays, link
// states).
func (n *Node) Transport() *transport.Transport { return n.tr }

// Store returns the node's data directory store (the peer daemon keeps its
// event log there).
func (n *Node) Store() *store.Store { return n.st }

// ListenAddrs returns the addresses peers can dial.
func (n *Node) ListenAddrs() []string { return n.tr.ListenAddrs() }

func (n *Node) allowed(id peer.ID) bool {
	if n.deny[id] {
		return false
	}
	return len(n.allow) == 0 || n.allow[id]
}

// windowTotals sums unacknowledged and parked messages and counts stalled
// peers.
func (n *Node) windowTotals() (unacked, parked, stalled float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.peers {
		unacked += float64(p.lastSeq - p.acked)
		if p.parkedTo > p.acked {
			parked += float64(p.parkedTo - p.acked)
		}
		if p.stalled {
			stalled++
		}
	}
	return unacked, parked, stalled
}

// Stop stops the node: sends are refused from the moment it is called, the
// transport stops, every goroutine ends, the delivered positions,
// acknowledgements and last-active time are persisted and the data
// directory is closed. Nothing pending is discarded: a node started again
// from the same directory continues where this one left off.
//
// Stop is unconditional and idempotent: the first call starts the stop,
// which runs to its end whatever happens to the caller; every call returns
// once that work has ended, or with ctx's error when ctx ends first (the
// work completes in the background, for example once a blocked handler
// returns, and a later Stop then returns promptly).
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.mu.Lock()
		n.stopped = true // sends fail; frames and callbacks during the stop are ignored
		n.mu.Unlock()
		go n.stop()
	})
	select {
	case <-n.stopDone:
		return n.stopErr
	case <-ctx.Done():
		return fmt.Errorf("node: stop: %w", ctx.Err())
	}
}

// stop is the work of Stop; it runs once, in its own goroutine.
func (n *Node) stop() {
	defer close(n.stopDone)
	var errs []error
	if err := n.tr.Stop(context.Background()); err != nil {
		errs = append(errs, err)
	}
	n.mu.Lock()
	for _, p := range n.peers {
		for _, t := range []*time.Timer{p.rtTimer, p.ackTimer} {
			if t != nil {
				t.Stop()
			}
		}
		p.rtTimer, p.ackTimer = nil, nil
	}
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
	if err := n.persistFinal(); err != nil {
		errs = append(errs, err)
	}
	n.events.Close()
	n.evWG.Wait()
	n.sum.Stop()
	if err := n.st.Close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		n.stopErr = fmt.Errorf("node stop: %w", errors.Join(errs...))
	}
}

// persistFinal records what was delivered and acknowledged, so a restart
// neither redelivers nor resends it.
func (n *Node) persistFinal() error {
	n.mu.Lock()
	type final struct {
		id               string
		delivered, acked uint64
	}
	var fs []final
	for _, p := range n.peers {
		if p.delivered > p.stored || p.acked > p.ackStored || p.intent > p.delivered {
			fs = append(fs, final{p.key, p.delivered, p.acked})
		}
	}
	n.mu.Unlock()
	return n.st.Update(func(tx *store.Tx) error {
		for _, f := range fs {
			rec, ok, err := tx.Peer(f.id)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			// Every handler has returned: what was delivered is exact,
			// so a restart marks nothing as a redelivery.
			rec.Delivered = max(rec.Delivered, f.delivered)
			rec.Intent = rec.Delivered
			if err := tx.PutPeer(f.id, rec); err != nil {
				return err
			}
			if _, err := tx.Ack(f.id, f.acked); err != nil {
				return err
			}
		}
		return tx.SetLastActive(time.Now())
	})
}
