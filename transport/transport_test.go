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

	"github.com/ocapnet/ocapnet/wire"
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
	if len(infos) != 1 || infos[0].Incarnation != a.inc || len(infos[0].Features) != 1 || infos[0].Features[0] != wire.FeatureClose {
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
	if hs := len(b.rec.handshakesFrom(a.PeerID())); hs != 1 {
		t.Errorf("B saw %d handshakes from A, want exactly 1 (W8)", hs)
	}
}

func TestSendChecks(t *testing.T) {
	a := startNode(t, func(o *Options) { o.MaxMessageSize = 1000 })
	unreachable := newSeed().PeerID()
	if err := a.Send(context.Background(), unreachable, make([]byte, 1001)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("oversize send: %v, want ErrMessageTooLarge", err)
	}
	if err := a.Send(context.Background(), unreachable, []byte("x"), "not a multiaddr"); !errors.Is(err, ErrInvalidPeer) {
		t.Errorf("bad hint: %v, want ErrInvalidPeer", err)
	}
	if err := a.TrySend(context.Background(), unreachable, []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("TrySend: %v, want ErrNotConnected", err)
	}
	// An unreachable peer (a closed port): Send waits for a channel for as
	// long as its context allows, and says so; nothing is queued.
	hint := "/ip4/127.0.0.1/tcp/1/p2p/" + unreachable.String()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := a.Send(ctx, unreachable, []byte("x"), hint); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("send to an unreachable peer: %v, want the context's deadline", err)
	}
	// A Send waiting when Stop comes gets ErrStopped.
	waiting := sendAllLater(a, unreachable, []string{"waiting"})
	waitFor(t, 5*time.Second, "a Send waiting", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		p := a.peers[unreachable]
		return p != nil && p.waiters == 1
	})
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer stopCancel()
	if err := a.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("waiting send at Stop: %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Send did not return at Stop")
	}
	if err := a.Send(context.Background(), unreachable, []byte("late")); !errors.Is(err, ErrStopped) {
		t.Errorf("send after stop: %v, want ErrStopped", err)
	}
	if err := a.Stop(stopCtx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"no incarnation":      func(o *Options) { o.IncarnationID = "" },
		"negative timeout":    func(o *Options) { o.WriteTimeout = -time.Second },
		"negative count":      func(o *Options) { o.MaxConnections = -1 },
		"base above max":      func(o *Options) { o.ReconnectBaseDelay, o.ReconnectMaxDelay = time.Minute, time.Second },
		"relay base over max": func(o *Options) { o.RelayRedialBase = 2 * time.Minute },
		"relay without /p2p/": func(o *Options) { o.Relays = []string{"/ip4/127.0.0.1/tcp/1"} },
		"negative rate":       func(o *Options) { o.InboundRate = -1 },
	} {
		opts := fastOptions(newSeed())
		mod(&opts)
		if tr, err := Start(context.Background(), opts, Handler{}); !errors.Is(err, ErrInvalidOptions) {
			if tr != nil {
				tr.Stop(context.Background())
			}
			t.Errorf("%s: Start = %v, want ErrInvalidOptions", name, err)
		}
	}
}

// A peer process stopped and restarted with the same seed and incarnation
// (same data directory) while a Send waits: the Send completes on the new
// channel, every message arrives in order, exactly once, and the layer above
// learns of the new channel with a new generation.
func TestPeerRestartSameIncarnationSendWaits(t *testing.T) {
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
	later := numbered("later", 30)
	done := sendAllLater(a, b.PeerID(), later)
	b2 := startWith(t, bOpts) // same seed, incarnation and port
	waitSent(t, done)
	waitMessages(t, b2, a.PeerID(), later)
	a.rec.mu.Lock()
	gens := a.rec.channels[b.PeerID()]
	a.rec.mu.Unlock()
	if len(gens) != 2 || gens[1] <= gens[0] {
		t.Errorf("OnChannel generations %v, want two increasing ones", gens)
	}
}

// A peer that comes back with a new incarnation: the transport reports the
// incarnation to the layer above in OnHandshake (which decides what a
// restart means) and in PeerInfo; the link keeps working.
func TestPeerNewIncarnationReported(t *testing.T) {
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
	bOpts.IncarnationID = "new-incarnation"
	done := sendAllLater(a, b.PeerID(), []string{"after"})
	b2 := startWith(t, bOpts)
	waitSent(t, done)
	waitMessages(t, b2, a.PeerID(), []string{"after"})
	if hs := a.rec.handshakesFrom(b.PeerID()); len(hs) != 2 || hs[0] != b.inc || hs[1] != "new-incarnation" {
		t.Errorf("incarnations reported in OnHandshake: %v", hs)
	}
	if got := a.Peer(b.PeerID()).Incarnation; got != "new-incarnation" {
		t.Errorf("PeerInfo.Incarnation %q", got)
	}
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

// Close ends a Send waiting for a channel with ErrIntentionallyClosed, and
// OnLinkEnded has run when Close returns.
func TestCloseEndsWaitingSend(t *testing.T) {
	a := startNode(t, nil)
	target := newSeed().PeerID()
	hint := "/ip4/127.0.0.1/tcp/1/p2p/" + target.String()
	done := sendAllLater(a, target, []string{"m1"}, hint)
	waitFor(t, 5*time.Second, "a Send waiting", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		p := a.peers[target]
		return p != nil && p.waiters == 1
	})
	if err := a.Close(target); err != nil {
		t.Fatal(err)
	}
	if ended := a.rec.linkEnded(target); len(ended) != 1 || !errors.Is(ended[0], ErrIntentionallyClosed) {
		t.Fatalf("OnLinkEnded after Close returned: %v", ended)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrIntentionallyClosed) {
			t.Fatalf("waiting Send: %v, want ErrIntentionallyClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Send did not return at Close")
	}
	if err := a.Admit(target); !errors.Is(err, ErrIntentionallyClosed) {
		t.Errorf("Admit after Close: %v", err)
	}
}

// A refused address: the peer is reported failed after FailureThreshold
// identical errors spanning FailureMinDuration, and with MaxRetryAttempts
// the transport gives up: OnLinkEnded and the waiting Send say why.
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
	done := sendAllLater(a, target, []string{"q1"}, hint)
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not give up")
	}
	if !errors.Is(err, ErrRetriesExhausted) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Send: %v, want ErrRetriesExhausted naming the error", err)
	}
	if ended := a.rec.linkEnded(target); len(ended) != 1 || !errors.Is(ended[0], ErrRetriesExhausted) {
		t.Fatalf("OnLinkEnded: %v", ended)
	}
	// State events reach the recorder asynchronously.
	waitFor(t, 5*time.Second, "the peer reported failed", func() bool { return a.rec.sawState(target, StateFailed) })
	if a.state(target) != StateGaveUp {
		t.Errorf("state %v, want gave-up", a.state(target))
	}
	// Admit (an application send) starts a new session.
	if err := a.Admit(target); err != nil {
		t.Fatal(err)
	}
	if a.state(target) == StateGaveUp {
		t.Error("Admit left the peer given up")
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
	if err := a.RegisterHints(target, hint); err != nil {
		t.Fatal(err)
	}
	a.SetPinned(target, true)
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
	if err := a.RegisterHints(b.PeerID(), b.addr(t)); err != nil {
		t.Fatal(err)
	}
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
	if err := a.RegisterHints(b.PeerID(), b.addr(t)); err != nil {
		t.Fatal(err)
	}
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

// Stale cleanup forgets idle peers but never one with a Send waiting, a
// pinned one, or a closed one (upstream W10, W11).
func TestStaleCleanup(t *testing.T) {
	a := startNode(t, func(o *Options) {
		o.StalePeerTimeout = 50 * time.Millisecond
		o.CleanupInterval = 20 * time.Millisecond
		o.ReconnectBaseDelay = time.Hour // keep the waiting peer waiting
		o.ReconnectMaxDelay = time.Hour
	})
	idle, waiting, pinned, closed := newSeed().PeerID(), newSeed().PeerID(), newSeed().PeerID(), newSeed().PeerID()
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/", freePort(t))
	if err := a.RegisterHints(idle, dead+idle.String()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Send(ctx, waiting, []byte("waiting"), dead+waiting.String()) }()
	defer func() { cancel(); <-done }()
	a.SetPinned(pinned, true)
	if err := a.RegisterHints(pinned, dead+pinned.String()); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(closed); err != nil {
		t.Fatal(err)
	}
	has := func(id peer.ID) bool {
		return slices.ContainsFunc(a.Peers(), func(p PeerInfo) bool { return p.ID == id })
	}
	waitFor(t, 5*time.Second, "the idle peer forgotten", func() bool { return !has(idle) })
	for name, id := range map[string]peer.ID{"waiting": waiting, "pinned": pinned, "closed": closed} {
		if !has(id) {
			t.Errorf("the %s peer was forgotten", name)
		}
	}
}

// Stop is unconditional and idempotent: a Stop whose context expires while
// a handler blocks returns the context's error, the stop still completes in
// the background once the handler is released, a second Stop then returns
// promptly, and no goroutine is left (TestMain's goleak).
func TestStopWithBlockedHandler(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	opts := fastOptions(newSeed())
	b, err := Start(context.Background(), opts, Handler{OnMessage: func(peer.ID, []byte) {
		once.Do(func() { close(entered) })
		<-release
	}})
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, nil)
	hint := b.ListenAddrs()[0]
	if err := a.Send(context.Background(), b.PeerID(), []byte("block"), hint); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a blocked handler: %v, want the context's deadline", err)
	}
	if err := b.Send(context.Background(), a.PeerID(), []byte("x")); !errors.Is(err, ErrStopped) {
		t.Errorf("send during a stop: %v, want ErrStopped", err)
	}
	close(release)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	start := time.Now()
	if err := b.Stop(ctx2); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Stop took %v", d)
	}
	if err := b.Stop(ctx2); err != nil {
		t.Errorf("third Stop: %v", err)
	}
}

// OnChannel runs before the new channel delivers anything and before
// TrySendOn can use it: a layer above that writes from OnChannel's
// generation never writes on a channel it was not told of.
func TestOnChannelBeforeTraffic(t *testing.T) {
	var mu sync.Mutex
	var gens []uint64
	var msgsBefore []int
	b := startNode(t, nil)
	a := startNode(t, nil)
	b.rec.mu.Lock()
	b.rec.onChannel = func(p peer.ID, gen uint64) {
		mu.Lock()
		gens = append(gens, gen)
		msgsBefore = append(msgsBefore, len(b.rec.messages(p)))
		mu.Unlock()
	}
	b.rec.mu.Unlock()
	sendAll(t, a, b.PeerID(), numbered("x", 5), b.addr(t))
	waitMessages(t, b, a.PeerID(), numbered("x", 5))
	mu.Lock()
	defer mu.Unlock()
	if len(gens) != 1 || msgsBefore[0] != 0 {
		t.Fatalf("OnChannel calls %v with %v messages delivered before", gens, msgsBefore)
	}
	if info := b.Peer(a.PeerID()); info.Gen != gens[0] {
		t.Errorf("PeerInfo.Gen %d, OnChannel said %d", info.Gen, gens[0])
	}
}
