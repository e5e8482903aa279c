package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// Upstream's isPrivateAddress table (ref §8.10 #123).
func TestIsPrivateAddress(t *testing.T) {
	private := []string{"127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"localhost", "::1", "fc00::1", "fd12:3456::1", "fe80::1"}
	public := []string{"172.15.0.1", "172.32.0.1", "192.169.0.1", "8.8.8.8", "2001:db8::1", "example.com", "",
		"256.0.0.1", "fcevil.attacker.com", "fdcafe", "169.254.1.1", "100.64.0.1", "0.0.0.0"}
	for _, h := range private {
		if !isPrivateAddress(h) {
			t.Errorf("isPrivateAddress(%q) = false", h)
		}
	}
	for _, h := range public {
		if isPrivateAddress(h) {
			t.Errorf("isPrivateAddress(%q) = true", h)
		}
	}
}

// Upstream's dial filter (ref §4.3, §8.5 #71).
func TestGaterDialFilter(t *testing.T) {
	relay := ma.StringCast("/dns4/relay.example.org/tcp/9001/ws/p2p/12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc")
	g := newGater([]string{"allowed.example.net"}, []ma.Multiaddr{relay}, nil)
	tests := []struct {
		addr  string
		allow bool
	}{
		{"/dns4/public.example.com/tcp/443/wss", true},
		{"/ip4/8.8.8.8/tcp/443/tls/ws", true},
		{"/ip4/127.0.0.1/tcp/9001/ws", true},
		{"/ip4/10.1.2.3/tcp/9001/ws", true},
		{"/ip4/172.20.0.1/tcp/9001/ws", true},
		{"/ip4/192.168.0.7/tcp/9001/ws", true},
		{"/ip4/8.8.8.8/tcp/9001/ws", false},
		{"/dns4/allowed.example.net/tcp/80/ws", true},
		{"/dns4/other.example.net/tcp/80/ws", false},
		{"/dns4/fcevil.attacker.com/tcp/80/ws", false},
		{"/dns4/relay.example.org/tcp/9001/ws", true}, // host of a plain-ws relay
		{"/ip4/8.8.8.8/tcp/4001", true},
		{"/ip4/8.8.8.8/udp/4001/quic-v1", true},
	}
	for _, tt := range tests {
		if got := g.InterceptAddrDial("", ma.StringCast(tt.addr)); got != tt.allow {
			t.Errorf("InterceptAddrDial(%s) = %v, want %v", tt.addr, got, tt.allow)
		}
	}
}

// The gater is wired into the host: a plain-ws dial to a public address is
// refused before any packet is sent.
func TestGaterRefusesDialBeforeSending(t *testing.T) {
	a := startNode(t, nil)
	target := newSeed().PeerID()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	// 203.0.113.0/24 is TEST-NET-3: never routed; the gater must refuse first.
	err := a.Host().Connect(ctx, peer.AddrInfo{ID: target, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/203.0.113.7/tcp/9001/ws")}})
	if !errors.Is(err, swarm.ErrGaterDisallowedConnection) && !allGated(err) {
		t.Fatalf("dial error %v, want the gater's refusal", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v: the dial was attempted", d)
	}
	if class, code := classify(err); class != classFatal || code != "GATED" {
		t.Errorf("classified as %v %s, want fatal GATED", class, code)
	}
}
