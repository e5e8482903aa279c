package node

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// startFlood starts n throwaway identities (bare transports, seeds
// {tag, i}) and runs each through do, concurrently.
func startFlood(t *testing.T, n int, tag byte, do func(r *rawPeer)) []*rawPeer {
	t.Helper()
	rs := make([]*rawPeer, n)
	for i := range rs {
		rs[i] = startRaw(t, identity.Seed{tag, byte(i), byte(i >> 8)})
	}
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { do(r) })
	}
	wg.Wait()
	return rs
}

func inMemory(n *Node, id peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers[id] != nil
}

// seqsSent returns the seqs of the application frames r received after the
// first skip frames.
func seqsSent(t *testing.T, r *rawPeer, skip int) []uint64 {
	t.Helper()
	var out []uint64
	for _, f := range r.got()[skip:] {
		m, err := wire.DecodeMessage([]byte(f))
		if err != nil {
			t.Fatalf("frame %q: %v", f, err)
		}
		if !m.IsAck {
			out = append(out, m.Envelope.Seq)
		}
	}
	return out
}

// The idle-peer cap bounds memory, never correctness (issue 12.4): a flood
// of identities ten times MaxIdlePeers, each delivering a message, pushes a
// real peer's state out of memory; afterwards that peer, whose acks were
// lost, resends its messages: none is delivered again, the next ones are
// delivered once, no gap is reported, and our own log towards it goes on
// from where it was (nothing acknowledged is resent, the next seq follows).
func TestIdentityFloodPastIdleCap(t *testing.T) {
	const idleCap, flood = 4, 40
	opts := fastOptions(t.TempDir())
	opts.MaxIdlePeers = idleCap
	opts.ActiveInterval = 50 * time.Millisecond
	n := start(t, opts)
	ctx := context.Background()

	r := startRaw(t, identity.Seed{0x61})
	for s := 1; s <= 5; s++ {
		r.send(t, n, env(s))
	}
	waitFor(t, 5*time.Second, "5 delivered and acknowledged", func() bool {
		return countFrom(n.rec.messages(), r.PeerID()) == 5 && slices.Contains(r.got(), `{"ack":5}`)
	})
	// Our direction: two messages, acknowledged.
	for i := 1; i <= 2; i++ {
		if _, err := n.Send(ctx, r.PeerID(), "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "our 2 messages", func() bool { return len(seqsSent(t, r, 0)) >= 2 })
	r.send(t, n, `{"ack":2}`)
	waitFor(t, 5*time.Second, "acknowledged", func() bool {
		ps, _, _ := n.Peer(r.PeerID())
		return ps.Acked == 2
	})

	startFlood(t, flood, 0x62, func(f *rawPeer) {
		if err := f.Send(ctx, n.PeerID(), []byte(env(1)), n.addr(t)); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 10*time.Second, "the flood delivered", func() bool { return len(n.rec.messages()) == 5+flood })
	waitFor(t, 10*time.Second, "the peer table back within the cap", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.peers) <= idleCap
	})
	if inMemory(n.Node, r.PeerID()) {
		t.Fatal("the real peer, idle longest, is still in memory")
	}
	if got := promtest.ToFloat64(n.metrics.evictions); got < flood+1-idleCap {
		t.Errorf("%v evictions, want at least %d", got, flood+1-idleCap)
	}

	// The lost-ack case: the peer resends 1..5, then sends 6 and 7.
	skip := len(r.got())
	for s := 1; s <= 7; s++ {
		r.send(t, n, env(s))
	}
	waitFor(t, 5*time.Second, "6 and 7 acknowledged", func() bool { return slices.Contains(r.got()[skip:], `{"ack":7}`) })
	checkInOrder(t, n.rec.messages(), r.PeerID(), 7)
	if g := eventsOf[Gap](n.rec); len(g) != 0 {
		t.Fatalf("gap reported: %+v", g)
	}
	// Our log towards it continues at seq 3; 1 and 2 are not resent.
	if _, err := n.Send(ctx, r.PeerID(), "m", param(3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "our message 3", func() bool { return slices.Contains(seqsSent(t, r, skip), 3) })
	if s := seqsSent(t, r, skip); slices.ContainsFunc(s, func(q uint64) bool { return q < 3 }) {
		t.Fatalf("acknowledged messages resent after the flood: seqs %v", s)
	}
}

// Admission under an identity flood (issue 12.3), through the node: with
// every channel slot held by identities it has never seen (ten times
// MaxConnections of them, retrying, their channels in use), a peer the node
// knows from durable state is admitted and served: its next messages are delivered once, in
// order, unmarked, with no gap, and acknowledged.
func TestKnownPeerAdmittedUnderIdentityFlood(t *testing.T) {
	const slots, flood = 4, 40
	opts := fastOptions(t.TempDir())
	opts.Transport.MaxConnections = slots
	opts.MaxIdlePeers = slots
	opts.ActiveInterval = 50 * time.Millisecond
	n := start(t, opts)
	ctx := context.Background()

	kdir := t.TempDir()
	k := start(t, fastOptions(kdir))
	send := func(k *testNode, from, to int) {
		for i := from; i <= to; i++ {
			if _, err := k.Send(ctx, n.PeerID(), "m", param(i), n.addr(t)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 15*time.Second, "acknowledgements", func() bool {
			ps, _, _ := k.Peer(n.PeerID())
			return ps.Acked == uint64(to)
		})
	}
	send(k, 1, 3)
	stop(t, k.Node)

	// Throwaway identities take every slot and keep them busy (a malformed
	// frame every 50 ms: dropped, but a channel in use), so no unknown
	// newcomer may push them out; those without a slot keep dialling.
	fctx, stopFlood := context.WithCancel(ctx)
	var busy sync.WaitGroup
	t.Cleanup(func() { stopFlood(); busy.Wait() })
	startFlood(t, flood, 0x63, func(f *rawPeer) {
		busy.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				sctx, cancel := context.WithTimeout(fctx, time.Second)
				f.Send(sctx, n.PeerID(), []byte(`{"seq":0,"method":"x"}`), n.addr(t)) // refused while the slots are full
				cancel()
				select {
				case <-fctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	})
	waitFor(t, 10*time.Second, "every slot taken by the flood", func() bool {
		c := 0
		for _, p := range n.Transport().Peers() {
			if p.State == transport.StateConnected && p.ID != k.PeerID() {
				c++
			}
		}
		return c == slots
	})
	k2 := start(t, fastOptions(kdir))
	send(k2, 4, 6)
	checkInOrder(t, n.rec.messages(), k.PeerID(), 6)
	if g := eventsOf[Gap](n.rec); len(g) != 0 {
		t.Fatalf("gap reported: %+v", g)
	}
	if len(n.rec.messages()) != 6 {
		t.Fatalf("%d messages delivered, want the known peer's 6", len(n.rec.messages()))
	}
}

// The trim before an eviction keeps a crash window: messages an earlier
// process may have delivered (recorded intent past the delivered position)
// are still marked as redeliveries after the peer was dropped from memory
// and reloaded; the ones after the window are not.
func TestCrashWindowSurvivesEviction(t *testing.T) {
	const idleCap, flood = 2, 10
	dir := t.TempDir()
	first := start(t, fastOptions(dir))
	stop(t, first.Node)
	seed := identity.Seed{0x64}
	r := startRaw(t, seed)
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *store.Tx) error {
		return tx.PutPeer(seed.PeerID().String(), store.PeerRecord{Incarnation: r.inc, Delivered: 2, Intent: 5})
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	opts := fastOptions(dir)
	opts.MaxIdlePeers = idleCap
	opts.ActiveInterval = 50 * time.Millisecond
	n := start(t, opts)
	// A duplicate loads the peer (and is dropped); then the flood pushes it
	// out of memory.
	r.send(t, n, env(2))
	waitFor(t, 5*time.Second, "re-ack", func() bool { return slices.Contains(r.got(), `{"ack":2}`) })
	startFlood(t, flood, 0x65, func(f *rawPeer) {
		if err := f.Send(context.Background(), n.PeerID(), []byte(env(1)), n.addr(t)); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 10*time.Second, "the peer dropped from memory", func() bool { return !inMemory(n.Node, r.PeerID()) && len(n.rec.messages()) == flood })
	for s := 1; s <= 7; s++ {
		r.send(t, n, env(s))
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return countFrom(n.rec.messages(), r.PeerID()) == 5 })
	for _, m := range n.rec.messages() {
		if m.From != r.PeerID() {
			continue
		}
		if want := m.Seq <= 5; m.Redelivery != want {
			t.Fatalf("seq %d redelivery %v, want %v", m.Seq, m.Redelivery, want)
		}
	}
}
