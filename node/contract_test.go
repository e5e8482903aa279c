package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

// Close refuses sends before it returns: 1,000 rounds of Close then an
// immediate Send, with a Reconnect between rounds, and not one Send is
// accepted. Every message accepted before a Close is parked by it.
func TestCloseThenSendHammer(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	target := testPeer(t)
	ctx := context.Background()
	accepted := 0
	for i := range 1000 {
		if err := a.Reconnect(target); err != nil {
			t.Fatal(err)
		}
		// A concurrent sender races with Close: what it gets in before
		// Close must be parked, what comes after must be refused.
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = a.Send(ctx, target, "race", param(i))
		}()
		if err := a.Close(target); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Send(ctx, target, "after", param(i)); err == nil {
			accepted++
		} else if !errors.Is(err, transport.ErrIntentionallyClosed) {
			t.Fatalf("round %d: send after Close: %v, want ErrIntentionallyClosed", i, err)
		}
		wg.Wait()
		if ps := peerStatus(a.Node, target); ps.Unacked != ps.Parked {
			t.Fatalf("round %d: %d unacknowledged but only %d parked after Close", i, ps.Unacked, ps.Parked)
		}
	}
	if accepted != 0 {
		t.Fatalf("%d of 1000 sends right after Close were accepted", accepted)
	}
}

// Stop is unconditional and idempotent: a Stop whose context expires while
// a handler blocks returns the context's error, the stop completes in the
// background once the handler is released, and a second Stop returns
// promptly (goleak in TestMain checks nothing is left).
func TestStopWithBlockedHandler(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	b, err := Start(context.Background(), fastOptions(t.TempDir()), Handler{OnMessage: func(Message) error {
		once.Do(func() { close(entered) })
		<-release
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	a := start(t, fastOptions(t.TempDir()))
	baddr := ""
	for _, addr := range b.ListenAddrs() {
		baddr = addr
		break
	}
	if _, err := a.Send(context.Background(), b.PeerID(), "m", param(1), baddr); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a blocked handler: %v, want the context's deadline", err)
	}
	if _, err := b.Send(context.Background(), a.PeerID(), "m", param(1)); !errors.Is(err, ErrStopped) {
		t.Errorf("send during the stop: %v, want ErrStopped", err)
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

// A caller's tag travels with the message into the data directory and
// comes back in the acknowledgement, also when the sender restarted in
// between.
func TestTagsInAcknowledgements(t *testing.T) {
	adir := t.TempDir()
	a := start(t, fastOptions(adir))
	bdir := t.TempDir()
	b := start(t, fastOptions(bdir))
	baddr, blisten, bid := b.addr(t), b.listen(t), b.PeerID()
	ctx := context.Background()
	if _, err := a.SendMessage(ctx, Outgoing{To: bid, Method: "m", Params: param(1), Hints: []string{baddr}, Tag: json.RawMessage(`"req-1"`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "ack", func() bool { return len(eventsOf[Acknowledged](a.rec)) == 1 })
	if ack := eventsOf[Acknowledged](a.rec)[0]; string(ack.Tags[1]) != `"req-1"` {
		t.Fatalf("acknowledgement %+v: want tag \"req-1\" for seq 1", ack)
	}
	if _, err := a.SendMessage(ctx, Outgoing{To: bid, Method: "m", Params: param(2), Tag: json.RawMessage(`{"bad"`)}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("invalid tag: %v", err)
	}
	// B away; A sends a tagged message and restarts before it is acked.
	stop(t, b.Node)
	if _, err := a.SendMessage(ctx, Outgoing{To: bid, Method: "m", Params: param(2), Tag: json.RawMessage(`{"id":2}`)}); err != nil {
		t.Fatal(err)
	}
	stop(t, a.Node)
	a2 := start(t, fastOptions(adir))
	bopts := fastOptions(bdir)
	bopts.Transport.ListenAddrs = []string{blisten}
	start(t, bopts)
	waitFor(t, 10*time.Second, "ack after restart", func() bool { return len(eventsOf[Acknowledged](a2.rec)) == 1 })
	if ack := eventsOf[Acknowledged](a2.rec)[0]; ack.From != 2 || string(ack.Tags[2]) != `{"id":2}` {
		t.Fatalf("acknowledgement after restart %+v", ack)
	}
}

// A Send waiting for room is woken when another Send's reservation ends
// without a message (it failed), not only by acknowledgements: with an
// offline peer and a full window, every waiting Send completes once there
// is room.
func TestWindowRoomFromFailedReservation(t *testing.T) {
	opts := fastOptions(t.TempDir())
	opts.Window = 2
	a := start(t, opts)
	target := testPeer(t)
	ctx := context.Background()
	if _, err := a.Send(ctx, target, "m", param(1)); err != nil {
		t.Fatal(err)
	}
	// The second place is held by a reservation that will end without a
	// message, as a Send whose append fails does.
	p := a.peer(target)
	if err := a.reserve(ctx, p); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := a.Send(ctx, target, "m", param(2))
		got <- err
	}()
	waitFor(t, 5*time.Second, "the Send to wait", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return p.waiting == 1
	})
	a.unreserve(p) // the reservation ends without a message
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Send waiting for room was not woken when a reservation ended (lost wakeup)")
	}
}

// Concurrent Sends finish in any order while the store assigns sequence
// numbers in commit order, so the window's use can shrink when a Send ends
// without any acknowledgement: with exactly enough room for every message,
// 64 concurrent Sends to an offline peer all return (a waiter that saw the
// transient count is woken).
func TestWindowExactlyFullConcurrentSends(t *testing.T) {
	const n, senders = 1000, 64
	for round := range 3 {
		opts := fastOptions(t.TempDir())
		opts.Window = n + 1
		a := start(t, opts)
		target := testPeer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var next atomic.Int64
		errs := make(chan error, senders)
		for range senders {
			go func() {
				for next.Add(1) <= n {
					if _, err := a.Send(ctx, target, "m", param(1)); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range senders {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v (%+v)", round, err, peerStatus(a.Node, target))
			}
		}
		cancel()
		if ps := peerStatus(a.Node, target); ps.NextSeq != n {
			t.Fatalf("round %d: %d sent, want %d", round, ps.NextSeq, n)
		}
		stop(t, a.Node)
	}
}

func TestInvalidOptions(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"no dir":             func(o *Options) { o.Dir = "" },
		"negative window":    func(o *Options) { o.Window = -1 },
		"negative timeout":   func(o *Options) { o.AckTimeout = -time.Second },
		"timeout over max":   func(o *Options) { o.AckTimeout, o.AckTimeoutMax = time.Hour, time.Minute },
		"seed and mnemonic":  func(o *Options) { o.KeySeed, o.Mnemonic = "01", "abandon" },
		"transport nonsense": func(o *Options) { o.Transport.MaxConnections = -5 },
	} {
		opts := fastOptions(t.TempDir())
		mod(&opts)
		n, err := Start(context.Background(), opts, Handler{})
		if n != nil {
			stop(t, n)
		}
		if !errors.Is(err, ErrInvalidOptions) && !errors.Is(err, transport.ErrInvalidOptions) {
			t.Errorf("%s: Start = %v, want ErrInvalidOptions", name, err)
		}
	}
}

func testPeer(t *testing.T) peer.ID {
	t.Helper()
	s, err := identity.RandomSeed()
	if err != nil {
		t.Fatal(err)
	}
	return s.PeerID()
}

func peerStatus(n *Node, id peer.ID) PeerStatus {
	ps, _, _ := n.Peer(id)
	return ps
}

// SendBatch commits a batch in one group commit with per-peer order kept,
// refuses what SendMessage would refuse without stopping the rest, and the
// receivers get everything in order.
func TestSendBatch(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	b := start(t, fastOptions(t.TempDir()))
	c := start(t, fastOptions(t.TempDir()))
	var ms []Outgoing
	for i := 1; i <= 50; i++ {
		ms = append(ms, Outgoing{To: b.PeerID(), Method: "m", Params: param(i), Hints: []string{b.addr(t)}})
		ms = append(ms, Outgoing{To: c.PeerID(), Method: "m", Params: param(i), Hints: []string{c.addr(t)}, Tag: json.RawMessage(`1`)})
	}
	ms = append(ms, Outgoing{To: b.PeerID(), Method: "m", Params: json.RawMessage(`{bad`)})
	res := a.SendBatch(context.Background(), ms)
	for i, r := range res[:100] {
		if r.Err != nil || r.Seq != uint64(i/2+1) {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if !errors.Is(res[100].Err, ErrInvalidMessage) {
		t.Fatalf("invalid message in a batch: %+v", res[100])
	}
	waitFor(t, 10*time.Second, "deliveries", func() bool {
		return len(b.rec.messages()) == 50 && len(c.rec.messages()) == 50
	})
	checkInOrder(t, b.rec.messages(), a.PeerID(), 50)
	checkInOrder(t, c.rec.messages(), a.PeerID(), 50)
}

// The receiver reserves delivery intent ahead: after the first
// reservation, its read loop does not write one for each batch.
func TestIntentReservedAhead(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	b := start(t, fastOptions(t.TempDir()))
	ctx := context.Background()
	const total = 3000
	var ms []Outgoing
	for i := 1; i <= total; i++ {
		ms = append(ms, Outgoing{To: b.PeerID(), Method: "m", Params: param(i), Hints: []string{b.addr(t)}})
	}
	for i := 0; i < total; i += 500 {
		for _, r := range a.SendBatch(ctx, ms[i:i+500]) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	waitFor(t, 20*time.Second, "deliveries", func() bool { return len(b.rec.messages()) == total })
	checkInOrder(t, b.rec.messages(), a.PeerID(), total)
	inLoop := promtestutil.ToFloat64(b.metrics.intentInLoop)
	waits := promtestutil.ToFloat64(b.metrics.intentWaits)
	// 3,000 messages at a batch of 64 would be 47 writes in the loop.
	if inLoop > 3 {
		t.Errorf("%v intent writes in the read loop for %d messages (and %v waits): reservations are not made ahead", inLoop, total, waits)
	}
	t.Logf("intent writes in the read loop: %v, waits for one made ahead: %v", inLoop, waits)
}

// The read loop does not wait for an fsync: with the receiver's store
// wedged (its single committer stuck inside a transaction), messages within
// the intent already reserved are still delivered, although the
// acknowledgement flush and the reservation ahead are stuck behind the
// wedge; once it is released everything is acknowledged.
func TestReadLoopDoesNotWaitForFsync(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	b := start(t, fastOptions(t.TempDir()))
	ctx := context.Background()
	if _, err := a.Send(ctx, b.PeerID(), "m", param(1), b.addr(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first delivery", func() bool { return len(b.rec.messages()) == 1 })
	// The first message reserved IntentBatch numbers in the read loop.
	reserved := b.opts.IntentBatch
	if reserved == 0 {
		reserved = 64
	}
	started, release := make(chan struct{}), make(chan struct{})
	wedged := make(chan error, 1)
	go func() {
		wedged <- b.st.Update(func(*store.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	// Message 2 is delivered, and its acknowledgement's flush queues its
	// write behind the wedge.
	if _, err := a.Send(ctx, b.PeerID(), "m", param(2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the second delivery", func() bool { return len(b.rec.messages()) == 2 })
	waitFor(t, 10*time.Second, "the acknowledgement's write queued", func() bool { return b.st.Stats().Queued > 0 })
	total := reserved - 1 // seq 2..reserved: all within the reservation
	var ms []Outgoing
	for i := 3; i <= total+1; i++ {
		ms = append(ms, Outgoing{To: b.PeerID(), Method: "m", Params: param(i)})
	}
	for _, r := range a.SendBatch(ctx, ms) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	waitFor(t, 10*time.Second, "deliveries while the receiver's store is wedged", func() bool {
		return len(b.rec.messages()) == total+1
	})
	checkInOrder(t, b.rec.messages(), a.PeerID(), total+1)
	close(release)
	released = true
	if err := <-wedged; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the acknowledgements", func() bool {
		ps, _, err := a.Peer(b.PeerID())
		return err == nil && ps.Acked == uint64(total+1)
	})
}

// Concurrent SendBatch callers share group commits, and each caller's
// messages keep their batch order, numbered consecutively.
func TestSendBatchConcurrentShareCommits(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	b := start(t, fastOptions(t.TempDir()))
	ctx := context.Background()
	if _, err := a.Send(ctx, b.PeerID(), "m", json.RawMessage(`[-1,0]`), b.addr(t)); err != nil {
		t.Fatal(err)
	}
	const callers, each = 16, 10
	started, release := make(chan struct{}), make(chan struct{})
	wedged := make(chan error, 1)
	go func() {
		wedged <- a.st.Update(func(*store.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	commits := a.st.Stats().Commits
	results := make([][]Result, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms []Outgoing
			for i := range each {
				ms = append(ms, Outgoing{To: b.PeerID(), Method: "m", Params: json.RawMessage(fmt.Sprintf("[%d,%d]", c, i))})
			}
			results[c] = a.SendBatch(ctx, ms)
		}()
	}
	waitFor(t, 10*time.Second, "every batch queued", func() bool { return a.st.Stats().Queued >= callers })
	close(release)
	wg.Wait()
	if err := <-wedged; err != nil {
		t.Fatal(err)
	}
	if n := a.st.Stats().Commits - commits; n > 3 {
		t.Errorf("%d concurrent batches took %d commits", callers, n)
	}
	for c, rs := range results {
		for i, r := range rs {
			if r.Err != nil || r.Seq != rs[0].Seq+uint64(i) {
				t.Fatalf("caller %d message %d: %+v (first seq %d)", c, i, r, rs[0].Seq)
			}
		}
	}
	waitFor(t, 20*time.Second, "deliveries", func() bool { return len(b.rec.messages()) == 1+callers*each })
	next := make([]int, callers)
	for i, m := range b.rec.messages()[1:] {
		if m.Seq != uint64(i+2) || m.Redelivery {
			t.Fatalf("delivery %d: seq %d, redelivery %v", i+2, m.Seq, m.Redelivery)
		}
		var ci [2]int
		if err := json.Unmarshal(m.Params, &ci); err != nil {
			t.Fatal(err)
		}
		if ci[1] != next[ci[0]] {
			t.Fatalf("caller %d: message %d arrived when %d was next", ci[0], ci[1], next[ci[0]])
		}
		next[ci[0]]++
	}
}
