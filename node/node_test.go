package node

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

func TestExchangeInOrderAndAcknowledged(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	b := start(t, fastOptions(t.TempDir()))
	const n = 500
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		seq, err := a.Send(ctx, b.PeerID(), "deliver", param(i), b.addr(t))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i) {
			t.Fatalf("seq %d for message %d", seq, i)
		}
	}
	// And one the other way, so acks are also piggybacked.
	if _, err := b.Send(ctx, a.PeerID(), "deliver", param(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "all messages", func() bool { return countFrom(b.rec.messages(), a.PeerID()) == n })
	checkInOrder(t, b.rec.messages(), a.PeerID(), n)
	waitFor(t, 5*time.Second, "reply", func() bool { return countFrom(a.rec.messages(), b.PeerID()) == 1 })
	waitFor(t, 5*time.Second, "acknowledgements", func() bool {
		var to uint64
		for _, e := range eventsOf[Acknowledged](a.rec) {
			to = max(to, e.To)
		}
		return to == n
	})
	for _, ps := range a.Peers() {
		if ps.ID == b.PeerID() && (ps.Unacked != 0 || ps.Acked != n) {
			t.Fatalf("sender still has %d unacknowledged, acked %d", ps.Unacked, ps.Acked)
		}
	}
}

func TestSendChecks(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	ctx := context.Background()
	other := identity.Seed{7}.PeerID()
	if _, err := a.Send(ctx, a.PeerID(), "m", nil); !errors.Is(err, transport.ErrInvalidPeer) {
		t.Fatalf("send to self: %v", err)
	}
	if _, err := a.Send(ctx, other, "m", json.RawMessage(`{"a":`)); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("bad params: %v", err)
	}
	big := make([]byte, 2<<20)
	for i := range big {
		big[i] = 'a'
	}
	big[0], big[len(big)-1] = '"', '"'
	if _, err := a.Send(ctx, other, "m", big); !errors.Is(err, transport.ErrMessageTooLarge) {
		t.Fatalf("big params: %v", err)
	}
}

func TestIdentityKeptAndMismatchRefused(t *testing.T) {
	dir := t.TempDir()
	opts := fastOptions(dir)
	opts.Mnemonic = "legal winner thank year wave sausage worth useful legal winner thank yellow"
	a := start(t, opts)
	if got, want := a.PeerID().String(), "12D3KooWPCyWnZCXR3VGdrQjLr5d8TBaAHD956XZvo6xoCXYB5AR"; got != want {
		t.Fatalf("peer ID %s, want %s", got, want)
	}
	inc := a.IncarnationID()
	stop(t, a.Node)

	// Restarted without a seed: the stored identity and incarnation.
	b := start(t, fastOptions(dir))
	if b.PeerID() != a.PeerID() || b.IncarnationID() != inc {
		t.Fatalf("restart changed identity: %s %s", b.PeerID(), b.IncarnationID())
	}
	// A second process on the same directory fails fast.
	if _, err := Start(context.Background(), fastOptions(dir), Handler{}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second start: %v", err)
	}
	stop(t, b.Node)

	other := fastOptions(dir)
	other.KeySeed = "c8"
	if _, err := Start(context.Background(), other, Handler{}); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("other seed: %v", err)
	}
}

// A receiver stopped and restarted from its directory on the same port:
// messages sent meanwhile arrive once, in order.
func TestReceiverRestart(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	bdir := t.TempDir()
	b := start(t, fastOptions(bdir))
	baddr, blisten := b.addr(t), b.listen(t)
	ctx := context.Background()
	for i := 1; i <= 50; i++ {
		if _, err := a.Send(ctx, b.PeerID(), "m", param(i), baddr); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "first half", func() bool { return countFrom(b.rec.messages(), a.PeerID()) == 50 })
	first := b.rec.messages()
	stop(t, b.Node)
	for i := 51; i <= 100; i++ {
		if _, err := a.Send(ctx, b.PeerID(), "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	opts := fastOptions(bdir)
	opts.Transport.ListenAddrs = []string{blisten}
	b2 := start(t, opts)
	waitFor(t, 10*time.Second, "second half", func() bool { return countFrom(b2.rec.messages(), a.PeerID()) == 50 })
	all := append(first, b2.rec.messages()...)
	checkInOrder(t, all, a.PeerID(), 100)
}

// A sender stopped with messages pending resumes them at start, dialling
// at once.
func TestSenderRestartResumes(t *testing.T) {
	adir, bdir := t.TempDir(), t.TempDir()
	b := start(t, fastOptions(bdir))
	baddr, blisten, bid := b.addr(t), b.listen(t), b.PeerID()
	stop(t, b.Node)

	a := start(t, fastOptions(adir))
	ctx := context.Background()
	for i := 1; i <= 20; i++ {
		if _, err := a.Send(ctx, bid, "m", param(i), baddr); err != nil {
			t.Fatal(err)
		}
	}
	stop(t, a.Node)

	opts := fastOptions(bdir)
	opts.Transport.ListenAddrs = []string{blisten}
	b2 := start(t, opts)
	a2 := start(t, fastOptions(adir))
	waitFor(t, 10*time.Second, "resumed messages", func() bool { return countFrom(b2.rec.messages(), a2.PeerID()) == 20 })
	checkInOrder(t, b2.rec.messages(), a2.PeerID(), 20)
}

func TestWindowFullBlocksThenFails(t *testing.T) {
	opts := fastOptions(t.TempDir())
	opts.Window = 4
	a := start(t, opts)
	other := identity.Seed{9}.PeerID() // never reachable
	ctx := context.Background()
	for i := 1; i <= 4; i++ {
		if _, err := a.Send(ctx, other, "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := a.Send(tctx, other, "m", param(5)); !errors.Is(err, ErrWindowFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fifth send: %v", err)
	}
	if ps := a.Peers(); len(ps) != 1 || ps[0].Unacked != 4 {
		t.Fatalf("peers: %+v", ps)
	}
}

// Close parks the window and hands it back; sends are refused until
// Reconnect; Resend delivers the parked messages before later ones.
func TestCloseParksThenResend(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	bdir := t.TempDir()
	b := start(t, fastOptions(bdir))
	baddr, blisten, bid := b.addr(t), b.listen(t), b.PeerID()
	ctx := context.Background()
	if _, err := a.Send(ctx, bid, "m", param(1), baddr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "first message acknowledged", func() bool { return len(eventsOf[Acknowledged](a.rec)) == 1 })
	stop(t, b.Node) // b is away: the next messages stay unacknowledged
	for i := 2; i <= 4; i++ {
		if _, err := a.Send(ctx, bid, "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(bid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "give-up", func() bool { return len(eventsOf[GaveUp](a.rec)) == 1 })
	g := eventsOf[GaveUp](a.rec)[0]
	if !errors.Is(g.Reason, transport.ErrIntentionallyClosed) || len(g.Messages) != 3 || g.Messages[0].Seq != 2 || string(g.Messages[2].Params) != "[4]" {
		t.Fatalf("give-up: %+v", g)
	}
	if parked, err := a.Parked(bid); err != nil || len(parked) != 3 || parked[0].Seq != 2 {
		t.Fatalf("Parked: %+v %v", parked, err)
	}
	if _, err := a.Send(ctx, bid, "m", param(5)); !errors.Is(err, transport.ErrIntentionallyClosed) {
		t.Fatalf("send after close: %v", err)
	}

	opts := fastOptions(bdir)
	opts.Transport.ListenAddrs = []string{blisten}
	b2 := start(t, opts)
	if err := a.Reconnect(bid); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, bid, "m", param(5)); err != nil {
		t.Fatal(err)
	}
	if k, err := a.Resend(bid); err != nil || k != 3 {
		t.Fatalf("Resend: %d %v", k, err)
	}
	waitFor(t, 10*time.Second, "resent messages", func() bool { return countFrom(b2.rec.messages(), a.PeerID()) == 4 })
	all := append(b.rec.messages(), b2.rec.messages()...)
	checkInOrder(t, all, a.PeerID(), 5)
	if _, err := a.Resend(bid); !errors.Is(err, ErrNothingParked) {
		t.Fatalf("second Resend: %v", err)
	}
}

// Discarded messages leave a gap that an ocapnet receiver accepts after
// GapTolerance receptions, reporting it.
func TestDiscardLeavesReportedGap(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	bdir := t.TempDir()
	b := start(t, fastOptions(bdir))
	baddr, blisten, bid := b.addr(t), b.listen(t), b.PeerID()
	ctx := context.Background()
	if _, err := a.Send(ctx, bid, "m", param(1), baddr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "first message acknowledged", func() bool { return len(eventsOf[Acknowledged](a.rec)) == 1 })
	stop(t, b.Node)
	for i := 2; i <= 3; i++ {
		if _, err := a.Send(ctx, bid, "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(bid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "give-up", func() bool { return len(eventsOf[GaveUp](a.rec)) == 1 })
	if k, err := a.Discard(bid); err != nil || k != 2 {
		t.Fatalf("Discard: %d %v", k, err)
	}
	opts := fastOptions(bdir)
	opts.Transport.ListenAddrs = []string{blisten}
	b2 := start(t, opts)
	if err := a.Reconnect(bid); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, bid, "m", json.RawMessage(`"after"`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "message after the gap", func() bool { return countFrom(b2.rec.messages(), a.PeerID()) == 1 })
	m := b2.rec.messages()[0]
	if m.Seq != 4 || string(m.Params) != `"after"` {
		t.Fatalf("got %+v", m)
	}
	gaps := eventsOf[Gap](b2.rec)
	if len(gaps) != 1 || gaps[0].From != 2 || gaps[0].To != 3 {
		t.Fatalf("gap events: %+v", gaps)
	}
}

// A peer whose data directory was replaced (a new incarnation) gets our
// undelivered messages handed back; Resend delivers them from seq 1.
func TestPeerRestartHandsBackAndRenumbers(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	b := start(t, fastOptions(t.TempDir()))
	baddr, blisten, bid := b.addr(t), b.listen(t), b.PeerID()
	ctx := context.Background()
	if _, err := a.Send(ctx, bid, "m", param(1), baddr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "first message acknowledged", func() bool { return len(eventsOf[Acknowledged](a.rec)) == 1 })
	// The same key in a fresh directory: a restarted peer.
	var keySeed string
	if err := b.st.View(func(tx *store.Tx) error {
		id, _, err := tx.Identity()
		keySeed = id.KeySeed
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stop(t, b.Node)
	for i := 2; i <= 3; i++ {
		if _, err := a.Send(ctx, bid, "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	opts := fastOptions(t.TempDir())
	opts.KeySeed = keySeed
	opts.Transport.ListenAddrs = []string{blisten}
	b2 := start(t, opts)
	waitFor(t, 10*time.Second, "restart detected", func() bool { return len(eventsOf[PeerRestarted](a.rec)) == 1 })
	waitFor(t, 5*time.Second, "give-up", func() bool { return len(eventsOf[GaveUp](a.rec)) == 1 })
	g := eventsOf[GaveUp](a.rec)[0]
	if !errors.Is(g.Reason, transport.ErrPeerRestarted) || len(g.Messages) != 2 || g.Messages[0].Seq != 1 || string(g.Messages[0].Params) != "[2]" {
		t.Fatalf("give-up: %+v", g)
	}
	if k, err := a.Resend(bid); err != nil || k != 2 {
		t.Fatalf("Resend: %d %v", k, err)
	}
	waitFor(t, 10*time.Second, "resent", func() bool { return countFrom(b2.rec.messages(), a.PeerID()) == 2 })
	for i, m := range b2.rec.messages() {
		if m.Seq != uint64(i+1) || string(m.Params) != string(param(i+2)) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
}

// Persisted failure states are cleared when the node starts more than
// ClearFailuresAfter after it was last active, and the start is reported.
func TestCrossRestartWakeClearsFailures(t *testing.T) {
	dir := t.TempDir()
	a := start(t, fastOptions(dir))
	stop(t, a.Node)
	other := identity.Seed{5}.PeerID()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	failedAt := time.Now().Add(-3 * time.Hour).UTC()
	if err := st.Update(func(tx *store.Tx) error {
		if err := tx.PutPeer(other.String(), store.PeerRecord{FailedSince: failedAt}); err != nil {
			return err
		}
		return tx.SetLastActive(time.Now().Add(-2 * time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	a2 := start(t, fastOptions(dir))
	waitFor(t, 5*time.Second, "wake event", func() bool { return len(eventsOf[WakeDetected](a2.rec)) == 1 })
	if w := eventsOf[WakeDetected](a2.rec)[0]; !w.AcrossRestart || w.Gap < 2*time.Hour {
		t.Fatalf("wake: %+v", w)
	}
	if err := a2.st.View(func(tx *store.Tx) error {
		rec, _, err := tx.Peer(other.String())
		if !rec.FailedSince.IsZero() {
			t.Errorf("failure state kept: %v", rec.FailedSince)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// Below the threshold a persisted failure is restored and reported.
func TestFailureStateRestored(t *testing.T) {
	dir := t.TempDir()
	a := start(t, fastOptions(dir))
	stop(t, a.Node)
	other := identity.Seed{6}.PeerID()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *store.Tx) error {
		return tx.PutPeer(other.String(), store.PeerRecord{FailedSince: time.Now().Add(-20 * time.Minute).UTC()})
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	a2 := start(t, fastOptions(dir))
	if len(eventsOf[WakeDetected](a2.rec)) != 0 {
		t.Fatal("wake reported for a short gap")
	}
	found := false
	for _, ps := range a2.Peers() {
		if ps.ID == other {
			found = true
			if ps.State != transport.StateFailed {
				t.Fatalf("state %v, want failed", ps.State)
			}
		}
	}
	if !found {
		t.Fatal("peer not loaded")
	}
}

func TestForgetReturnsUndelivered(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	other := identity.Seed{8}.PeerID()
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if _, err := a.Send(ctx, other, "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.Forget(other)
	if err != nil || len(got) != 3 || string(got[2].Params) != "[3]" {
		t.Fatalf("Forget: %+v %v", got, err)
	}
	if err := a.st.View(func(tx *store.Tx) error {
		if _, ok, _ := tx.Peer(other.String()); ok {
			t.Error("peer still stored")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestDenyList(t *testing.T) {
	b := start(t, fastOptions(t.TempDir()))
	aopts := fastOptions(t.TempDir())
	aopts.Deny = nil
	a := start(t, aopts)
	bopts := fastOptions(t.TempDir())
	bopts.Deny = append(bopts.Deny, a.PeerID())
	c := start(t, bopts)
	ctx := context.Background()
	if _, err := c.Send(ctx, a.PeerID(), "m", nil); !errors.Is(err, ErrPeerDenied) {
		t.Fatalf("send to denied: %v", err)
	}
	// a's messages to c are refused at the handshake; a's to b go through.
	if _, err := a.Send(ctx, c.PeerID(), "m", param(1), c.addr(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, b.PeerID(), "m", param(1), b.addr(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b's message", func() bool { return countFrom(b.rec.messages(), a.PeerID()) == 1 })
	if countFrom(c.rec.messages(), a.PeerID()) != 0 {
		t.Fatal("denied peer delivered a message")
	}
}

func TestDataDirPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a := start(t, fastOptions(dir))
	stop(t, a.Node)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v %v", fi.Mode(), err)
	}
}

// A handler that refuses a message gets it again (the sender's
// retransmission), with nothing after it delivered first and no gap
// accepted in between.
func TestRefusedMessageOfferedAgain(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	rec := &recorder{}
	refusals := 0
	rec.refuse = func(m Message) bool {
		if string(m.Params) == "[2]" && refusals < 1 {
			refusals++
			return true
		}
		return false
	}
	bn, err := Start(context.Background(), fastOptions(t.TempDir()), rec.handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, bn) })
	b := &testNode{Node: bn, rec: rec}
	for i := 1; i <= 10; i++ {
		if _, err := a.Send(context.Background(), b.PeerID(), "m", param(i), b.addr(t)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "all delivered", func() bool { return countFrom(b.rec.messages(), a.PeerID()) == 10 })
	checkInOrder(t, b.rec.messages(), a.PeerID(), 10)
	if len(eventsOf[Gap](b.rec)) != 0 {
		t.Fatal("a refused message was skipped as a gap")
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestNodeMetrics(t *testing.T) {
	ra, rb := prometheus.NewRegistry(), prometheus.NewRegistry()
	ao, bo := fastOptions(t.TempDir()), fastOptions(t.TempDir())
	ao.Transport.Metrics, bo.Transport.Metrics = ra, rb
	a, b := start(t, ao), start(t, bo)
	for i := 1; i <= 10; i++ {
		if _, err := a.Send(context.Background(), b.PeerID(), "m", param(i), b.addr(t)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "acks", func() bool { return gather(t, ra, "ocapnet_node_acknowledged_total") == 10 })
	if v := gather(t, ra, "ocapnet_node_sends_total"); v != 10 {
		t.Errorf("sends %v", v)
	}
	if v := gather(t, rb, "ocapnet_node_delivered_total"); v != 10 {
		t.Errorf("delivered %v", v)
	}
	if v := gather(t, ra, "ocapnet_node_unacknowledged_messages"); v != 0 {
		t.Errorf("unacknowledged %v", v)
	}
}

// A sender that gives the same hint with every Send pays for it once: it
// is parsed, registered and stored with the first Send only; a new hint is
// handled again, and an invalid one is still refused.
func TestRepeatedHintsCostNothing(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	ctx := context.Background()
	away := identity.Seed{9}.PeerID()
	hint := "/ip4/127.0.0.1/tcp/1/p2p/" + away.String()
	if _, err := a.Send(ctx, away, "m", param(0), hint); err != nil {
		t.Fatal(err)
	}
	first := a.hintWork.Load()
	if first == 0 {
		t.Fatal("the first hint was not checked")
	}
	for i := 1; i <= 20; i++ {
		if _, err := a.Send(ctx, away, "m", param(i), hint); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.hintWork.Load(); got != first {
		t.Errorf("20 Sends repeating a known hint did hint work %d times, want none", got-first)
	}
	other := "/ip4/127.0.0.1/tcp/2/p2p/" + away.String()
	if _, err := a.Send(ctx, away, "m", param(21), hint, other); err != nil {
		t.Fatal(err)
	}
	if a.hintWork.Load() == first {
		t.Error("a new hint was not checked and registered")
	}
	if _, err := a.Send(ctx, away, "m", param(22), hint, "/not/a/multiaddr"); !errors.Is(err, transport.ErrInvalidPeer) {
		t.Errorf("invalid hint next to a known one: %v, want ErrInvalidPeer", err)
	}
	a.mu.Lock()
	got := slices.Clone(a.peers[away].hints)
	a.mu.Unlock()
	if len(got) != 2 {
		t.Errorf("stored hints %v, want the two given", got)
	}
}

// Parked messages hold back later ones: after a Reconnect, a message sent
// before the Resend is not written past the parked ones (the receiver would
// take their numbers for a gap, accept it after GapTolerance receptions and
// acknowledge past them, and the sender would report as acknowledged
// messages that were never delivered: found by the chaos suite).
func TestParkedHoldBackLaterMessages(t *testing.T) {
	a := start(t, fastOptions(t.TempDir()))
	bdir := t.TempDir()
	b := start(t, fastOptions(bdir))
	baddr, blisten, bid := b.addr(t), b.listen(t), b.PeerID()
	ctx := context.Background()
	if _, err := a.Send(ctx, bid, "m", param(1), baddr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "first message acknowledged", func() bool { return len(eventsOf[Acknowledged](a.rec)) == 1 })
	stop(t, b.Node)
	for i := 2; i <= 3; i++ {
		if _, err := a.Send(ctx, bid, "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(bid); err != nil {
		t.Fatal(err)
	}
	opts := fastOptions(bdir)
	opts.Transport.ListenAddrs = []string{blisten}
	b2 := start(t, opts)
	if err := a.Reconnect(bid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the link back", func() bool {
		st, ok, err := a.Peer(bid)
		return err == nil && ok && st.State == transport.StateConnected
	})
	for i := 4; i <= 6; i++ {
		if _, err := a.Send(ctx, bid, "m", param(i)); err != nil {
			t.Fatal(err)
		}
	}
	// An absence window, not a wait for a condition: with the later
	// messages written, b2 would accept the gap after GapTolerance (3)
	// receptions, one per 300 ms ack timeout, and deliver them.
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if n := countFrom(b2.rec.messages(), a.PeerID()); n > 0 || len(eventsOf[Gap](b2.rec)) > 0 {
			t.Fatalf("before the Resend, b got %d messages and gaps %v", n, eventsOf[Gap](b2.rec))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, _, err := a.Peer(bid); err != nil || st.Parked != 2 {
		t.Fatalf("status before the Resend: %+v %v", st, err)
	}
	if k, err := a.Resend(bid); err != nil || k != 2 {
		t.Fatalf("Resend: %d %v", k, err)
	}
	waitFor(t, 10*time.Second, "every message", func() bool { return countFrom(b2.rec.messages(), a.PeerID()) == 5 })
	all := append(b.rec.messages(), b2.rec.messages()...)
	checkInOrder(t, all, a.PeerID(), 6)
	if g := eventsOf[Gap](b2.rec); len(g) > 0 {
		t.Fatalf("gaps reported: %v", g)
	}
}
