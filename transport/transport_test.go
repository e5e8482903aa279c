package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestExchangeBothWays(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	toB := numbered("a", 100)
	sendAll(t, a, b.PeerID(), toB, b.addr(t))
	waitMessages(t, b, a.PeerID(), toB)
	// B answers over the channel A opened: no hint needed.
	toA := numbered("b", 100)
	sendAll(t, b, a.PeerID(), toA)
	waitMessages(t, a, b.PeerID(), toA)
	if got := a.state(b.PeerID()); got != StateConnected {
		t.Errorf("A sees B %v, want connected", got)
	}
	infos := b.Peers()
	if len(infos) != 1 || infos[0].Incarnation != a.inc || len(infos[0].Features) != 1 || infos[0].Features[0] != FeatureClose {
		t.Errorf("B's peer info %+v: want A's incarnation %s and feature close", infos, a.inc)
	}
}

func TestConcurrentFirstSendsOneHandshake(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	hint := b.addr(t)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Send(context.Background(), b.PeerID(), []byte(fmt.Sprintf(`{"i":%d}`, i)), hint); err != nil {
				t.Errorf("Send: %v", err)
			}
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "50 messages", func() bool { return len(b.rec.messages(a.PeerID())) == n })
	for _, m := range b.rec.messages(a.PeerID()) {
		if strings.Contains(m, "handshake") {
			t.Fatalf("a handshake frame reached the application: %s", m)
		}
	}
	b.rec.mu.Lock()
	hs := b.rec.handshakes[a.PeerID()]
	b.rec.mu.Unlock()
	if hs != 1 {
		t.Errorf("B saw %d handshakes from A, want exactly 1 (W8)", hs)
	}
}

func TestSendChecks(t *testing.T) {
	a := startNode(t, func(o *Options) { o.MaxMessageSize = 1000; o.MaxQueue = 3 })
	unreachable := newSeed().PeerID()
	if err := a.Send(context.Background(), unreachable, make([]byte, 1001)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("oversize send: %v, want ErrMessageTooLarge", err)
	}
	if err := a.Send(context.Background(), unreachable, []byte("x"), "not a multiaddr"); !errors.Is(err, ErrInvalidPeer) {
		t.Errorf("bad hint: %v, want ErrInvalidPeer", err)
	}
	// An unreachable peer (a closed port): messages queue up to MaxQueue.
	hint := "/ip4/127.0.0.1/tcp/1/p2p/" + unreachable.String()
	for i := range 3 {
		if err := a.Send(context.Background(), unreachable, []byte(fmt.Sprint(i)), hint); err != nil {
			t.Fatalf("queueing message %d: %v", i, err)
		}
	}
	if err := a.Send(context.Background(), unreachable, []byte("3")); !errors.Is(err, ErrQueueFull) {
		t.Errorf("fourth send: %v, want ErrQueueFull", err)
	}
	if err := a.TrySend(context.Background(), unreachable, []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("TrySend: %v, want ErrNotConnected", err)
	}
	var depth int
	for _, p := range a.Peers() {
		if p.ID == unreachable {
			depth = p.QueueDepth
		}
	}
	if depth != 3 {
		t.Errorf("queue depth %d, want 3 (older messages kept)", depth)
	}
	// Stop returns the queued messages, in order.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	g := a.rec.giveUps(unreachable)
	if len(g) != 1 || !errors.Is(g[0].Reason, ErrStopped) || len(g[0].Messages) != 3 || string(g[0].Messages[0]) != "0" || string(g[0].Messages[2]) != "2" {
		t.Fatalf("give-ups at stop: %+v", g)
	}
	if err := a.Send(context.Background(), unreachable, []byte("late")); !errors.Is(err, ErrStopped) {
		t.Errorf("send after stop: %v, want ErrStopped", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A peer process stopped and restarted with the same seed and incarnation
// (same data directory) while messages are queued: all are delivered, in
// order, exactly once.
func TestPeerRestartSameIncarnationDeliversQueue(t *testing.T) {
	a := startNode(t, nil)
	bSeed := newSeed()
	port := freePort(t)
	bOpts := fastOptions(bSeed)
	bOpts.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}
	b := startWith(t, bOpts)
	hint := b.addr(t)
	first := numbered("first", 10)
	sendAll(t, a, b.PeerID(), first, hint)
	waitMessages(t, b, a.PeerID(), first)

	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A to notice B is gone", func() bool { return a.state(b.PeerID()) != StateConnected })
	queued := numbered("queued", 30)
	sendAll(t, a, b.PeerID(), queued)

	b2 := startWith(t, bOpts) // same seed, incarnation and port
	waitMessages(t, b2, a.PeerID(), queued)
	if r := a.rec.eventsOf(func(e Event) bool { _, ok := e.(PeerRestarted); return ok }); len(r) != 0 {
		t.Errorf("a plain process restart was reported as a peer restart: %v", r)
	}
}

// A peer that comes back with a new incarnation lost its state: A reports
// it and hands the messages queued for the old incarnation back.
func TestPeerRestartNewIncarnation(t *testing.T) {
	a := startNode(t, nil)
	bOpts := fastOptions(newSeed())
	bOpts.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))}
	b := startWith(t, bOpts)
	sendAll(t, a, b.PeerID(), []string{"hello"}, b.addr(t))
	waitMessages(t, b, a.PeerID(), []string{"hello"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A to notice B is gone", func() bool { return a.state(b.PeerID()) != StateConnected })
	sendAll(t, a, b.PeerID(), []string{"old-1", "old-2"})
	bOpts.IncarnationID = "new-incarnation"
	b2 := startWith(t, bOpts)
	waitFor(t, 10*time.Second, "PeerRestarted", func() bool {
		return len(a.rec.eventsOf(func(e Event) bool { r, ok := e.(PeerRestarted); return ok && r.Current == "new-incarnation" })) == 1
	})
	// The give-up is pushed right after PeerRestarted; the recorder may see
	// it a moment later.
	waitFor(t, 5*time.Second, "give-up", func() bool { return len(a.rec.giveUps(b.PeerID())) > 0 })
	g := a.rec.giveUps(b.PeerID())
	if len(g) != 1 || !errors.Is(g[0].Reason, ErrPeerRestarted) || len(g[0].Messages) != 2 || string(g[0].Messages[0]) != "old-1" {
		t.Fatalf("give-ups: %+v, want the two queued messages with ErrPeerRestarted", g)
	}
	// The link works with the new incarnation.
	sendAll(t, a, b.PeerID(), []string{"after"})
	waitMessages(t, b2, a.PeerID(), []string{"after"})
}

func TestCloseTellsPeer(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	sendAll(t, a, b.PeerID(), []string{"hi"}, b.addr(t))
	waitMessages(t, b, a.PeerID(), []string{"hi"})
	sendAll(t, b, a.PeerID(), []string{"hi back"})
	waitMessages(t, a, b.PeerID(), []string{"hi back"})

	if err := a.Close(b.PeerID()); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(context.Background(), b.PeerID(), []byte("x")); !errors.Is(err, ErrIntentionallyClosed) {
		t.Errorf("send after Close: %v, want ErrIntentionallyClosed", err)
	}
	waitFor(t, 5*time.Second, "B to see closed-by-peer", func() bool { return b.state(a.PeerID()) == StateClosedByPeer })
	if err := b.Send(context.Background(), a.PeerID(), []byte("x")); !errors.Is(err, ErrClosedByPeer) {
		t.Errorf("B's send after A's Close: %v, want ErrClosedByPeer", err)
	}
	// B does not reconnect on its own.
	if b.state(a.PeerID()) != StateClosedByPeer || a.state(b.PeerID()) != StateClosed {
		t.Fatalf("states after close: A sees %v, B sees %v", a.state(b.PeerID()), b.state(a.PeerID()))
	}
	// B reconnecting is refused by A, which tells B again: B stays closed.
	if err := b.Reconnect(a.PeerID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "B closed-by-peer again", func() bool { return b.state(a.PeerID()) == StateClosedByPeer })

	// A reconnects: both sides connected again, messages flow.
	if err := a.Reconnect(b.PeerID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "reconnection", func() bool {
		return a.state(b.PeerID()) == StateConnected && b.state(a.PeerID()) == StateConnected
	})
	sendAll(t, b, a.PeerID(), []string{"again"})
	waitMessages(t, a, b.PeerID(), []string{"hi back", "again"})
}

func TestCloseReturnsQueuedMessages(t *testing.T) {
	a := startNode(t, nil)
	target := newSeed().PeerID()
	hint := "/ip4/127.0.0.1/tcp/1/p2p/" + target.String()
	sendAll(t, a, target, []string{"m1", "m2"}, hint)
	if err := a.Close(target); err != nil {
		t.Fatal(err)
	}
	g := a.rec.giveUps(target)
	waitFor(t, 2*time.Second, "give-up event", func() bool { g = a.rec.giveUps(target); return len(g) == 1 })
	if !errors.Is(g[0].Reason, ErrIntentionallyClosed) || len(g[0].Messages) != 2 {
		t.Fatalf("give-up %+v", g[0])
	}
}

// A refused address: the peer is reported failed after FailureThreshold
// identical errors spanning FailureMinDuration, and with MaxRetryAttempts a
// give-up returns the queued messages.
func TestRefusedAddressFailsThenGivesUp(t *testing.T) {
	a := startNode(t, func(o *Options) {
		o.MaxRetryAttempts = 5
		o.FailureThreshold = 5
		o.FailureMinDuration = time.Millisecond
		o.ReconnectBaseDelay = 5 * time.Millisecond
		o.ReconnectMaxDelay = 20 * time.Millisecond
	})
	target := newSeed().PeerID()
	port := freePort(t) // nothing listens there: ECONNREFUSED
	hint := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, target)
	sendAll(t, a, target, []string{"q1", "q2"}, hint)
	waitFor(t, 10*time.Second, "give-up", func() bool { return len(a.rec.giveUps(target)) == 1 })
	g := a.rec.giveUps(target)[0]
	if !errors.Is(g.Reason, ErrRetriesExhausted) || len(g.Messages) != 2 {
		t.Fatalf("give-up %+v", g)
	}
	if !strings.Contains(g.Reason.Error(), "refused") {
		t.Errorf("give-up reason %q does not name the error", g.Reason)
	}
	if !a.rec.sawState(target, StateFailed) {
		t.Errorf("the peer was never reported failed")
	}
	if a.state(target) != StateGaveUp {
		t.Errorf("state %v, want gave-up", a.state(target))
	}
}

// The permanent-failure heuristic needs time, not just a count: a short
// outage never trips it.
func TestFailureNeedsMinimumDuration(t *testing.T) {
	a := startNode(t, func(o *Options) {
		o.FailureThreshold = 3
		o.FailureMinDuration = time.Hour
		o.ReconnectBaseDelay = 2 * time.Millisecond
		o.ReconnectMaxDelay = 5 * time.Millisecond
	})
	target := newSeed().PeerID()
	hint := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), target)
	sendAll(t, a, target, []string{"q"}, hint)
	waitFor(t, 10*time.Second, "many attempts", func() bool {
		for _, p := range a.Peers() {
			if p.ID == target && p.Attempt >= 10 {
				return true
			}
		}
		return false
	})
	if a.rec.sawState(target, StateFailed) {
		t.Fatal("failed after a few seconds although FailureMinDuration is 1h")
	}
}

// An unpinned peer with nothing to send that goes away is not redialled.
func TestIdlePeerNotRedialled(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	sendAll(t, a, b.PeerID(), []string{"x"}, b.addr(t))
	waitMessages(t, b, a.PeerID(), []string{"x"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "idle", func() bool { return a.state(b.PeerID()) == StateIdle })
	for _, p := range a.Peers() {
		if p.ID == b.PeerID() && p.Attempt != 0 {
			t.Fatalf("an idle peer is being redialled: %+v", p)
		}
	}
	if a.rec.sawState(b.PeerID(), StateReconnecting) {
		t.Error("A started reconnecting to a peer it had nothing for")
	}
}

// A pinned peer is redialled after a loss even with nothing queued.
func TestPinnedPeerRedialled(t *testing.T) {
	a := startNode(t, nil)
	bOpts := fastOptions(newSeed())
	bOpts.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))}
	b := startWith(t, bOpts)
	a.RegisterHints(b.PeerID(), b.addr(t))
	a.SetPinned(b.PeerID(), true)
	waitFor(t, 5*time.Second, "connected", func() bool { return a.state(b.PeerID()) == StateConnected })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "reconnecting", func() bool { return a.state(b.PeerID()) == StateReconnecting })
	b2 := startWith(t, bOpts)
	waitFor(t, 10*time.Second, "reconnected", func() bool { return a.state(b2.PeerID()) == StateConnected })
	if err := a.TrySend(context.Background(), b2.PeerID(), []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitMessages(t, b2, a.PeerID(), []string{"after"})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TrySendOn writes only on the channel generation it is given and reports
// a replaced channel without writing.
func TestTrySendOnGeneration(t *testing.T) {
	a := startNode(t, nil)
	bOpts := fastOptions(newSeed())
	bOpts.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))}
	b := startWith(t, bOpts)
	a.SetPinned(b.PeerID(), true)
	a.RegisterHints(b.PeerID(), b.addr(t))
	ctx := context.Background()
	var gen uint64
	waitFor(t, 5*time.Second, "a channel", func() bool {
		var err error
		gen, err = a.TrySendOn(ctx, b.PeerID(), []byte("one"), 0)
		return err == nil
	})
	if g, err := a.TrySendOn(ctx, b.PeerID(), []byte("two"), gen); err != nil || g != gen {
		t.Fatalf("same generation: %d %v", g, err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	b2 := startWith(t, bOpts)
	var now uint64
	waitFor(t, 10*time.Second, "a new channel", func() bool {
		g, err := a.TrySendOn(ctx, b.PeerID(), []byte("three"), gen)
		now = g
		return errors.Is(err, ErrChannelChanged)
	})
	if now == gen || now == 0 {
		t.Fatalf("new generation %d (old %d)", now, gen)
	}
	if _, err := a.TrySendOn(ctx, b.PeerID(), []byte("four"), now); err != nil {
		t.Fatal(err)
	}
	waitMessages(t, b2, a.PeerID(), []string{"four"})
}

// Stale cleanup forgets idle peers but never one that is reconnecting with
// queued messages, a pinned one, or a closed one (upstream W10, W11).
func TestStaleCleanup(t *testing.T) {
	a := startNode(t, func(o *Options) {
		o.StalePeerTimeout = 50 * time.Millisecond
		o.CleanupInterval = 20 * time.Millisecond
		o.ReconnectBaseDelay = time.Hour // keep the queued peer waiting
		o.ReconnectMaxDelay = time.Hour
	})
	idle, queued, pinned, closed := newSeed().PeerID(), newSeed().PeerID(), newSeed().PeerID(), newSeed().PeerID()
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/", freePort(t))
	a.RegisterHints(idle, dead+idle.String())
	if err := a.Send(context.Background(), queued, []byte("waiting"), dead+queued.String()); err != nil {
		t.Fatal(err)
	}
	a.SetPinned(pinned, true)
	a.RegisterHints(pinned, dead+pinned.String())
	a.Close(closed)
	has := func(id peer.ID) bool {
		return slices.ContainsFunc(a.Peers(), func(p PeerInfo) bool { return p.ID == id })
	}
	waitFor(t, 5*time.Second, "the idle peer forgotten", func() bool { return !has(idle) })
	for name, id := range map[string]peer.ID{"queued": queued, "pinned": pinned, "closed": closed} {
		if !has(id) {
			t.Errorf("the %s peer was forgotten", name)
		}
	}
	for _, p := range a.Peers() {
		if p.ID == queued && p.QueueDepth != 1 {
			t.Errorf("queued peer lost its queue: %+v", p)
		}
	}
}
