package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Errors produced by a real go-libp2p host, classified.
func TestClassifyRealErrors(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	target := newSeed().PeerID()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Connection refused.
	refused := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t)))
	err = h.Connect(ctx, peer.AddrInfo{ID: target, Addrs: []ma.Multiaddr{refused}})
	if class, code := classify(err); class != classUnreachable || code != "ECONNREFUSED" {
		t.Errorf("refused: %v → %v %s", err, class, code)
	}
	// Immediately again: go-libp2p's own dial backoff.
	err = h.Connect(ctx, peer.AddrInfo{ID: target, Addrs: []ma.Multiaddr{refused}})
	if class, code := classify(err); !errors.Is(err, swarm.ErrDialBackoff) || class != classTransient || code != "DIAL_BACKOFF" {
		t.Errorf("backoff: %v → %v %s", err, class, code)
	}
	// No addresses known at all.
	other := newSeed().PeerID()
	_, err = h.NewStream(ctx, other, "whatever")
	if class, code := classify(err); class != classUnreachable || code != "NO_ADDRESSES" {
		t.Errorf("no addresses: %v → %v %s", err, class, code)
	}
	// A different peer at the address: peer ID mismatch.
	b := startNode(t, nil)
	wrong := peer.AddrInfo{ID: newSeed().PeerID(), Addrs: b.Host().Addrs()}
	err = h.Connect(ctx, wrong)
	if class, code := classify(err); class != classUnreachable || code != "PEER_ID_MISMATCH" {
		t.Errorf("mismatch: %v → %v %s", err, class, code)
	}
	// The peer does not speak our protocol.
	x, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if err := h.Connect(ctx, peer.AddrInfo{ID: x.ID(), Addrs: x.Addrs()}); err != nil {
		t.Fatal(err)
	}
	_, err = h.NewStream(ctx, x.ID(), "whatever")
	if class, code := classify(err); class != classUnreachable || code != "PROTOCOL_NOT_SUPPORTED" {
		t.Errorf("protocol: %v → %v %s", err, class, code)
	}
}

func TestClassifyTable(t *testing.T) {
	tests := []struct {
		err   error
		class errClass
		code  string
	}{
		{ErrStopped, classFatal, "STOPPED"},
		{fmt.Errorf("dial: %w", context.Canceled), classFatal, "STOPPED"},
		{swarm.ErrGaterDisallowedConnection, classFatal, "GATED"},
		{&net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, classUnreachable, "EHOSTUNREACH"},
		{&net.OpError{Op: "dial", Err: syscall.ENETUNREACH}, classUnreachable, "ENETUNREACH"},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, classUnreachable, "ENOTFOUND"},
		{errors.New("error opening relay circuit: NO_RESERVATION (204)"), classUnreachable, "NO_RESERVATION"},
		{fmt.Errorf("%w: reading handshakeAck: EOF", ErrHandshakeFailed), classTransient, "HANDSHAKE_FAILED"},
		{network.ErrResourceLimitExceeded, classTransient, "LOCAL_LIMIT"},
		{network.ErrReset, classTransient, "ECONNRESET"},
		{context.DeadlineExceeded, classTransient, "ETIMEDOUT"},
		{errors.New("something new"), classTransient, "UNKNOWN"},
	}
	for _, tt := range tests {
		if class, code := classify(tt.err); class != tt.class || code != tt.code {
			t.Errorf("classify(%v) = %v %s, want %v %s", tt.err, class, code, tt.class, tt.code)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := startNode(t, func(o *Options) { o.Metrics = reg })
	b := startNode(t, nil)
	sendAll(t, a, b.PeerID(), numbered("m", 5), b.addr(t))
	waitMessages(t, b, a.PeerID(), numbered("m", 5))
	if got := testutil.ToFloat64(a.metrics.msgsOut); got != 5 {
		t.Errorf("messages sent = %v, want 5", got)
	}
	n, err := testutil.GatherAndCount(reg, "ocapnet_transport_peers", "ocapnet_transport_messages_sent_total", "ocapnet_transport_giveups_total")
	if err != nil || n < 9 {
		t.Errorf("gathered %d series (%v), want the 8 per-state gauges and the sent counter", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ocapnet_transport_peers Known peers by connection state.
# TYPE ocapnet_transport_peers gauge
ocapnet_transport_peers{state="closed"} 0
ocapnet_transport_peers{state="closed-by-peer"} 0
ocapnet_transport_peers{state="connected"} 1
ocapnet_transport_peers{state="connecting"} 0
ocapnet_transport_peers{state="failed"} 0
ocapnet_transport_peers{state="gave-up"} 0
ocapnet_transport_peers{state="idle"} 0
ocapnet_transport_peers{state="reconnecting"} 0
`), "ocapnet_transport_peers"); err != nil {
		t.Error(err)
	}
}

// Only silence and a dead connection count against a peer; our own
// resource limits never do (they are ours, not the peer's).
func TestProbeVerdict(t *testing.T) {
	for _, c := range []struct {
		err  error
		want verdict
	}{
		{nil, probeAnswered},
		{fmt.Errorf("cannot reserve outbound stream: %w", network.ErrResourceLimitExceeded), probeLocalLimit},
		{fmt.Errorf("scope: %w", network.ErrResourceScopeClosed), probeLocalLimit},
		{context.DeadlineExceeded, probeDead},
		{errors.New("liveness check timed out: some other error"), probeDead},
		{fmt.Errorf("ping: %w", network.ErrReset), probeAnswered},
	} {
		if got := probeVerdict(c.err); got != c.want {
			t.Errorf("probeVerdict(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
