package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocapnet/ocapnet/internal/p2phost"
)

func start(t *testing.T, o Options) *Server {
	t.Helper()
	o.KeySeed = seed(t)
	if o.ListenAddrs == nil {
		o.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// newClient is a plain go-libp2p host with the relay client, connected to s.
func newClient(t *testing.T, s *Server) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.EnableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, relayInfo(t, s)); err != nil {
		t.Fatal(err)
	}
	return h
}

func relayInfo(t *testing.T, s *Server) peer.AddrInfo {
	t.Helper()
	info, err := peer.AddrInfoFromString(s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	return *info
}

func reserve(t *testing.T, h host.Host, s *Server) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Reserve(ctx, h, relayInfo(t, s))
	return err
}

func status(err error) pbv2.Status {
	var re client.ReservationError
	if errors.As(err, &re) {
		return re.Status
	}
	return pbv2.Status_OK
}

// poll waits until cond holds, failing after d.
func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const echo = "/relay-test/echo/1"

// dialCircuit opens an echo stream from src to dst through s.
func dialCircuit(t *testing.T, src host.Host, dst peer.ID, s *Server) (network.Stream, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	circ := ma.StringCast(s.Addrs()[0] + "/p2p-circuit")
	if err := src.Connect(ctx, peer.AddrInfo{ID: dst, Addrs: []ma.Multiaddr{circ}}); err != nil {
		return nil, err
	}
	return src.NewStream(ctx, dst, echo)
}

// Reservations and circuits are counted while held and open, and no more.
func TestReservationsAndCircuitsCounted(t *testing.T) {
	s := start(t, Options{})
	dst := newClient(t, s)
	dst.SetStreamHandler(echo, func(st network.Stream) { io.Copy(st, st); st.Close() })
	if err := reserve(t, dst, s); err != nil {
		t.Fatal(err)
	}
	src := newClient(t, s)
	if err := reserve(t, src, s); err != nil {
		t.Fatal(err)
	}
	if err := reserve(t, src, s); err != nil { // a renewal is not a second reservation
		t.Fatal(err)
	}
	if got := s.Stats().Reservations; got != 2 {
		t.Fatalf("reservations %d, want 2", got)
	}
	st, err := dialCircuit(t, src, dst.ID(), s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	if got := s.Stats().Circuits; got != 1 {
		t.Fatalf("circuits %d, want 1", got)
	}
	st.Close()
	src.Network().ClosePeer(dst.ID())
	poll(t, 10*time.Second, "circuit closed", func() bool { return s.Stats().Circuits == 0 })
	src.Close()
	poll(t, 10*time.Second, "reservation dropped on disconnect", func() bool { return s.Stats().Reservations == 1 })
	if b := s.Stats().RelayedBytes; b < 8 {
		t.Fatalf("relayed %d bytes", b)
	}
}

// Only listed peers reserve and open circuits.
func TestAllowList(t *testing.T) {
	// The listed peer's key is made first: client hosts take random keys,
	// so list the host after creating it and start a second relay.
	probe := start(t, Options{})
	listed := newClient(t, probe)
	s := start(t, Options{AllowPeers: []peer.ID{listed.ID()}})
	listed.SetStreamHandler(echo, func(st network.Stream) { io.Copy(st, st); st.Close() })
	if err := listed.Connect(context.Background(), relayInfo(t, s)); err != nil {
		t.Fatal(err)
	}
	if err := reserve(t, listed, s); err != nil {
		t.Fatalf("listed peer: %v", err)
	}
	other := newClient(t, s)
	if err := reserve(t, other, s); status(err) != pbv2.Status_PERMISSION_DENIED {
		t.Fatalf("unlisted peer reserved: %v", err)
	}
	if _, err := dialCircuit(t, other, listed.ID(), s); err == nil || !strings.Contains(err.Error(), "PERMISSION_DENIED") {
		t.Fatalf("unlisted peer opened a circuit: %v", err)
	}
	// The relay counts a refusal just after answering it.
	poll(t, 5*time.Second, "both refusals counted", func() bool {
		r := s.Stats().Refusals
		return r[Refusal{"reserve", "PERMISSION_DENIED"}] == 1 && r[Refusal{"connect", "PERMISSION_DENIED"}] == 1
	})
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Refusals are counted by reason and logged as summaries, not one line each.
func TestRefusalsCountedAndSummarised(t *testing.T) {
	var logs syncBuffer
	s := start(t, Options{Limits: Limits{MaxReservationsPerIP: 2}, RefusalLogInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	const peers, refused = 12, 10
	for i := range peers {
		err := reserve(t, newClient(t, s), s)
		if i < 2 && err != nil {
			t.Fatalf("reservation %d: %v", i, err)
		}
		if i >= 2 && status(err) != pbv2.Status_RESERVATION_REFUSED {
			t.Fatalf("reservation %d over the per-IP limit: %v", i, err)
		}
	}
	poll(t, 5*time.Second, "refusals counted", func() bool {
		return s.Stats().Refusals[Refusal{"reserve", "RESERVATION_REFUSED"}] == refused
	})
	var lines []string
	poll(t, 5*time.Second, "refusal summaries add up to "+strings.Repeat("I", refused), func() bool {
		lines = strings.Split(strings.TrimSpace(logs.String()), "\n")
		return sumCounts(t, lines) == refused
	})
	if len(lines) >= refused {
		t.Fatalf("%d lines for %d refusals:\n%s", len(lines), refused, logs.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "relay refused requests") {
			t.Fatalf("line %q", l)
		}
	}
}

// sumCounts adds the reserve.RESERVATION_REFUSED=N counts of the lines.
func sumCounts(t *testing.T, lines []string) int {
	n := 0
	for _, l := range lines {
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "reserve.RESERVATION_REFUSED="); ok {
				var k int
				for _, c := range v {
					k = 10*k + int(c-'0')
				}
				n += k
			}
		}
	}
	return n
}

// Health reports a closed listener and a stopped relay; Stop is idempotent.
func TestHealth(t *testing.T) {
	s := start(t, Options{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}})
	if err := s.Health(); err != nil {
		t.Fatalf("serving relay: %v", err)
	}
	var quic ma.Multiaddr
	for _, a := range s.Host().Network().ListenAddresses() {
		if strings.Contains(a.String(), "quic") {
			quic = a
		}
	}
	s.Host().Network().(*swarm.Swarm).ListenClose(quic)
	err := s.Health()
	if !errors.Is(err, ErrNotServing) || !strings.Contains(err.Error(), "/ip4/127.0.0.1/udp/0/quic-v1") {
		t.Fatalf("closed listener: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.Health(); !errors.Is(err, ErrNotServing) || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("stopped relay: %v", err)
	}
}

// A listen port another relay holds fails Start, naming the address.
func TestStartPortInUse(t *testing.T) {
	first := start(t, Options{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}})
	held := first.Host().Network().ListenAddresses()[0].String()
	_, err := Start(Options{KeySeed: seed(t), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", held}})
	if !errors.Is(err, p2phost.ErrListen) || !strings.Contains(err.Error(), held) {
		t.Fatalf("second relay on %s: %v", held, err)
	}
}

func TestLimitsValidation(t *testing.T) {
	for name, l := range map[string]Limits{
		"negative":           {MaxReservations: -1},
		"conns <= rsvp":      {MaxReservations: 100, MaxConns: 100},
		"per ip conns":       {MaxReservationsPerIP: 10, MaxConnsPerIP: 5},
		"circuits per peer":  {MaxCircuits: 10, MaxCircuitsTotal: 5},
		"negative ttl":       {ReservationTTL: -time.Second},
		"negative per asn":   {MaxReservationsPerASN: -3},
		"negative conns/ip:": {MaxConnsPerIP: -1},
	} {
		if s, err := Start(Options{KeySeed: seed(t), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Limits: l}); !errors.Is(err, ErrInvalidOptions) {
			if s != nil {
				s.Stop()
			}
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Start(Options{KeySeed: seed(t), RefusalLogInterval: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("negative interval: %v", err)
	}
}

// Two relays cannot share a registry; the second fails cleanly.
func TestMetricsRegistryShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	start(t, Options{Metrics: reg})
	s, err := Start(Options{KeySeed: seed(t), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Metrics: reg})
	if err == nil {
		s.Stop()
		t.Fatal("second relay registered on the same registry")
	}
}

// MaxCircuitsTotal circuits open at once; one more is refused (the
// resource manager refuses its stop stream: CONNECTION_FAILED) and counted.
func TestMaxCircuitsTotal(t *testing.T) {
	s := start(t, Options{Limits: Limits{MaxCircuitsTotal: 2, MaxCircuits: 1}})
	var streams []network.Stream
	var last error
	for i := range 3 {
		dst := newClient(t, s)
		dst.SetStreamHandler(echo, func(st network.Stream) { io.Copy(st, st); st.Close() })
		if err := reserve(t, dst, s); err != nil {
			t.Fatal(err)
		}
		st, err := dialCircuit(t, newClient(t, s), dst.ID(), s)
		if i < 2 && err != nil {
			t.Fatalf("circuit %d: %v", i, err)
		}
		if err == nil {
			streams = append(streams, st)
		}
		last = err
	}
	defer func() {
		for _, st := range streams {
			st.Reset()
		}
	}()
	if last == nil || !strings.Contains(last.Error(), "CONNECTION_FAILED") {
		t.Fatalf("third circuit: %v", last)
	}
	poll(t, 5*time.Second, "the refusal counted", func() bool {
		return s.Stats().Refusals[Refusal{"connect", "CONNECTION_FAILED"}] == 1
	})
	if got := s.Stats().Circuits; got != 2 {
		t.Fatalf("circuits %d, want 2", got)
	}
}
