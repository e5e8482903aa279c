package transport

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// maxHintsPerPeer caps a peer's location hints (upstream keeps them
// unbounded, W16); the oldest are dropped first.
const maxHintsPerPeer = 32

// peerState is one peer's link state.
type peerState struct {
	id        peer.ID
	linkMu    sync.Mutex    // serialises the changes reported to Handler; taken before sendSem and mu
	sendSem   chan struct{} // one slot: held while writing to the peer; taken before mu
	deliverMu sync.Mutex    // held while OnMessage runs: one frame at a time per peer
	limiter   *rate.Limiter // inbound frames per second
	wake      chan struct{} // cap 1: cuts a backoff wait short
	gateN     atomic.Int32  // mirror of gate for the readers' lock-free fast path

	// Guarded by Transport.mu.
	state          State
	since          time.Time
	ch             *channel // the registered channel
	pinned         bool     // the layer above has work for the peer
	waiters        int      // Sends waiting for a channel
	wantDial       bool     // Reconnect asked for a connection
	hints          []string
	closed         bool // closed here with Close
	redialLogged   bool // a refused redial after our Close was logged (legacy.go); cleared by Close
	closedByPeer   bool // the peer sent the close signal
	gaveUp         bool // MaxRetryAttempts reached
	dialing        bool // the connector goroutine runs
	attempt        int
	nextRetry      time.Time
	lastErr        string
	failed         bool
	history        []failure
	incarnation    string   // from the last handshake
	features       []string // from the last handshake
	lastActive     time.Time
	lingering      []*channel    // replaced channels of a legacy peer, kept open (legacy.go)
	promptUntil    time.Time     // a legacy peer whose stream ended is dialled until then (legacy.go)
	legacyRestored bool          // the layer above said it was a JavaScript peer in an earlier run (PromptLegacy)
	settleUntil    time.Time     // a legacy peer is not dialled before then (legacy.go)
	strayTimer     *time.Timer   // prompts a fresh channel after the peer's extra handshakes time out (legacy.go)
	lastDial       time.Time     // when we last opened a stream to the peer
	gate           int           // losing channels still being drained + outbound handshakes in progress
	gateChanged    chan struct{} // closed (and replaced) whenever the gate or a channel's loser flag changes
	linkChanged    chan struct{} // closed (and replaced) when a channel is registered or the link ends
}

type failure struct {
	code string
	at   time.Time
}

// peerLocked returns the state of p, creating it. Caller holds mu.
func (t *Transport) peerLocked(id peer.ID) *peerState {
	p := t.peers[id]
	if p == nil {
		now := t.opts.Now()
		p = &peerState{
			id:          id,
			sendSem:     make(chan struct{}, 1),
			since:       now,
			lastActive:  now,
			wake:        make(chan struct{}, 1),
			gateChanged: make(chan struct{}),
			linkChanged: make(chan struct{}),
			limiter:     rate.NewLimiter(t.opts.InboundRate, t.opts.InboundBurst),
		}
		t.peers[id] = p
	}
	return p
}

// peer returns p's state, creating it, or nil after Stop.
func (t *Transport) peer(id peer.ID) *peerState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return nil
	}
	return t.peerLocked(id)
}

// signalLocked wakes everything waiting for p's link to change. Caller holds
// mu.
func (p *peerState) signalLocked() {
	close(p.linkChanged)
	p.linkChanged = make(chan struct{})
}

// setStateLocked moves p to s and emits StateChanged if it changed (every
// new reconnection attempt is reported, with the time the peer entered the
// state kept).
func (t *Transport) setStateLocked(p *peerState, s State) {
	if p.state == s && s != StateReconnecting {
		return
	}
	if p.state != s {
		p.since = t.opts.Now()
	}
	p.state = s
	t.events.Push(StateChanged{Peer: t.infoLocked(p)})
}

func (t *Transport) infoLocked(p *peerState) PeerInfo {
	info := PeerInfo{
		ID:          p.id,
		State:       p.state,
		LastError:   p.lastErr,
		Pinned:      p.pinned,
		Incarnation: p.incarnation,
		Features:    slices.Clone(p.features),
		Since:       p.since,
	}
	if p.state == StateConnecting || p.state == StateReconnecting || p.state == StateFailed {
		info.Attempt = p.attempt
		info.NextRetry = p.nextRetry
		info.Dialing = p.dialing && !t.opts.Now().Before(p.nextRetry)
	}
	if p.ch != nil {
		info.Gen = p.ch.gen
		info.RemoteAddr = p.ch.s.Conn().RemoteMultiaddr().String()
	}
	return info
}

// Peers returns a snapshot of every known peer's link, sorted by peer ID.
func (t *Transport) Peers() []PeerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PeerInfo, 0, len(t.peers))
	for _, p := range t.peers {
		out = append(out, t.infoLocked(p))
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) })
	return out
}

// Peer returns a snapshot of one peer's link (State Idle and no error if the
// transport knows nothing about it).
func (t *Transport) Peer(id peer.ID) PeerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil {
		return t.infoLocked(p)
	}
	return PeerInfo{ID: id}
}

// addHintsLocked merges hints into p's set (insertion order, no duplicates,
// at most maxHintsPerPeer: the oldest are dropped).
func (t *Transport) addHintsLocked(p *peerState, hints []string) {
	for _, h := range hints {
		if h == "" || slices.Contains(p.hints, h) {
			continue
		}
		p.hints = append(p.hints, h)
	}
	if n := len(p.hints) - maxHintsPerPeer; n > 0 {
		p.hints = slices.Delete(p.hints, 0, n)
	}
}

// CheckHints returns an ErrInvalidPeer error naming the first hint that is
// not a multiaddr usable to reach id.
func CheckHints(id peer.ID, hints []string) error {
	for _, h := range hints {
		if _, _, err := parseHint(id, h); err != nil {
			return err
		}
	}
	return nil
}

// RegisterHints adds location hints (multiaddrs) for a peer: addresses ending
// in the peer's own /p2p/ are dialled directly, others are relays to reach
// it through. Hints already known are ignored. It returns an ErrInvalidPeer
// error, registering nothing, if a hint cannot be parsed.
func (t *Transport) RegisterHints(id peer.ID, hints ...string) error {
	if err := CheckHints(id, hints); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return ErrStopped
	}
	t.addHintsLocked(t.peerLocked(id), hints)
	return nil
}

// refuseLocked returns the error for sending to p, if sends are refused.
func (t *Transport) refuseLocked(p *peerState) error {
	switch {
	case t.stopped:
		return ErrStopped
	case p.closed:
		return fmt.Errorf("send to %s: %w", p.id, ErrIntentionallyClosed)
	case p.closedByPeer:
		return fmt.Errorf("send to %s: %w", p.id, ErrClosedByPeer)
	}
	return nil
}

// Admit is what the layer above calls when its application hands it a
// message for p: it returns the error that refuses sends to p (stopped,
// closed, closed by the peer), or nil; and, as upstream does for an
// application send (reference §5.7, #807), it clears a failed or given-up
// state, since the application wants the peer now (a given-up peer is
// dialled again if anything needs it).
func (t *Transport) Admit(id peer.ID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return ErrStopped
	}
	p := t.peerLocked(id)
	if err := t.refuseLocked(p); err != nil {
		return err
	}
	if p.failed || p.gaveUp {
		p.failed, p.gaveUp = false, false
		p.history = nil
		p.attempt = 0
		if p.ch == nil && !p.dialing {
			t.setStateLocked(p, StateIdle)
		}
		poke(p.wake)
		t.ensureConnectorLocked(p)
	}
	return nil
}

// SetPinned marks p as having work the layer above needs to deliver (or as
// wanted by the application): while pinned, the transport connects to p and
// reconnects after every loss. Unpinned peers are not redialled after a
// loss unless a Send waits for them.
func (t *Transport) SetPinned(id peer.ID, pinned bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	p := t.peerLocked(id)
	p.pinned = pinned
	if pinned {
		t.ensureConnectorLocked(p)
	}
}

// RestoreFailed marks p as failed since the given time, as a layer above
// that persisted the state across a restart reports it: the peer is shown
// as StateFailed and, after one immediate attempt when it has something to
// deliver, retried at the backoff cap. Admit, Reconnect or a wake clears it.
func (t *Transport) RestoreFailed(id peer.ID, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	p := t.peerLocked(id)
	p.failed = true
	if p.ch == nil {
		t.setStateLocked(p, StateFailed)
		p.since = since
	}
}

// needsConnLocked reports whether p should be (re)connected.
func (t *Transport) needsConnLocked(p *peerState) bool {
	return p.pinned || p.waiters > 0 || p.wantDial || (!p.promptUntil.IsZero() && t.opts.Now().Before(p.promptUntil))
}

// ensureConnectorLocked starts p's connector goroutine unless it runs, a
// channel is open, the link ended, or nothing needs a connection.
func (t *Transport) ensureConnectorLocked(p *peerState) {
	if t.stopped || p.dialing || p.ch != nil || p.closed || p.closedByPeer || p.gaveUp || !t.needsConnLocked(p) {
		return
	}
	p.dialing = true
	t.goTracked(func() { t.connect(p) })
}

// poke cuts a wait on c short (c has capacity 1).
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
