package testnet

import (
	"crypto/rand"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// Relay is a go-libp2p circuit relay v2 server on loopback with no limit
// signalled to clients (relay.WithInfiniteLimits), as ocap kernels need:
// JavaScript kernels refuse to run their protocol on limited connections.
// It can be stopped and started again with the same key and port, like a
// relay process that restarts.
type Relay struct {
	t    testing.TB
	key  crypto.PrivKey
	id   peer.ID
	port int

	mu    sync.Mutex
	h     host.Host
	relay *relay.Relay
}

// NewRelay starts a relay on a free loopback TCP port; it is stopped when
// the test ends.
func NewRelay(t testing.TB) *Relay {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &Relay{t: t, key: key, id: id, port: port}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// ID is the relay's peer ID.
func (r *Relay) ID() peer.ID { return r.id }

// Addr is the relay's full multiaddr, /ip4/127.0.0.1/tcp/PORT/p2p/ID.
func (r *Relay) Addr() string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", r.port, r.id)
}

// AddrInfo is the relay's address info.
func (r *Relay) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: r.id, Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", r.port))}}
}

// Start starts the relay (again) on its port with its key.
func (r *Relay) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h != nil {
		return
	}
	h, err := libp2p.New(
		libp2p.Identity(r.key),
		libp2p.ListenAddrStrings(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", r.port)),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ForceReachabilityPublic(),
	)
	if err != nil {
		r.t.Fatalf("testnet: relay host: %v", err)
	}
	rl, err := relay.New(h, relay.WithInfiniteLimits())
	if err != nil {
		h.Close()
		r.t.Fatalf("testnet: relay service: %v", err)
	}
	r.h, r.relay = h, rl
}

// Stop stops the relay, dropping every reservation and circuit.
func (r *Relay) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h == nil {
		return
	}
	r.relay.Close()
	r.h.Close()
	r.h, r.relay = nil, nil
}
