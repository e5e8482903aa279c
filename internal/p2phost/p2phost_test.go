package p2phost

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

func key(t *testing.T) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newHost(t *testing.T, o Options) host.Host {
	t.Helper()
	if o.Identity == nil {
		o.Identity = key(t)
	}
	if o.Limits.Conns == 0 {
		o.Limits.Conns = 64
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}}
}

var loopbackAll = []string{
	"/ip4/127.0.0.1/tcp/0",
	"/ip4/127.0.0.1/tcp/0/ws",
	"/ip4/127.0.0.1/tcp/0/tls/ws",
	"/ip4/127.0.0.1/udp/0/quic-v1",
	"/ip4/127.0.0.1/udp/0/quic-v1/webtransport",
	"/ip4/127.0.0.1/udp/0/webrtc-direct",
}

// Every transport listens, every configured address is reported bound,
// and a second host connects over each one.
func TestAllTransportsListenAndDial(t *testing.T) {
	a := newHost(t, Options{ListenAddrs: loopbackAll, WSSConfig: selfSigned(t), Ping: true})
	if miss := NotListening(a, loopbackAll); len(miss) != 0 {
		t.Fatalf("not listening on %v; bound %v", miss, a.Network().ListenAddresses())
	}
	if miss := NotListening(a, []string{"/ip4/127.0.0.1/tcp/1/ws"}); len(miss) != 1 {
		t.Fatalf("a fixed port that is not bound counts as listening")
	}
	for _, addr := range a.Addrs() {
		if strings.Contains(addr.String(), "/tls/") {
			continue // the dialer would need the certificate; WSS listening is checked above
		}
		b := newHost(t, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: []ma.Multiaddr{addr}})
		cancel()
		if err != nil {
			t.Errorf("dial %s: %v", addr, err)
		}
	}
}

// boundAddrs returns a's listen addresses with their real ports and without
// certificate hashes: what a second process would be configured with.
func boundAddrs(t *testing.T, a host.Host) []string {
	var out []string
	for _, l := range a.Network().ListenAddresses() {
		var keep []ma.Component
		for _, c := range l {
			if c.Protocol().Code != ma.P_CERTHASH {
				keep = append(keep, c)
			}
		}
		out = append(out, ma.Multiaddr(keep).String())
	}
	return out
}

// A port held by another host fails New for every transport, naming the
// address, with EADDRINUSE underneath.
func TestPortInUseRefused(t *testing.T) {
	first := newHost(t, Options{ListenAddrs: loopbackAll, WSSConfig: selfSigned(t)})
	held := boundAddrs(t, first)
	if len(held) != len(loopbackAll) {
		t.Fatalf("first host bound %v", held)
	}
	for _, addr := range held {
		t.Run(addr, func(t *testing.T) {
			// One free address besides: go-libp2p alone would start on it.
			_, err := New(Options{Identity: key(t), Limits: Limits{Conns: 8}, WSSConfig: selfSigned(t),
				ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", addr}})
			var le *ListenError
			if !errors.As(err, &le) || len(le.Addrs) != 1 || le.Addrs[0].Addr != addr {
				t.Fatalf("err %v, want a ListenError naming %s", err, addr)
			}
			if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), addr) {
				t.Fatalf("err %v", err)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("%v does not unwrap to EADDRINUSE", err)
			}
		})
	}
}

// With TCPReuseport on both sides, go-libp2p binds a port another host
// holds: the hazard TCPReuseport's default avoids.
func TestTCPReuseportSharesPort(t *testing.T) {
	first := newHost(t, Options{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, TCPReuseport: true, Transports: []Transport{TCP}})
	held := boundAddrs(t, first)
	second := newHost(t, Options{ListenAddrs: held, TCPReuseport: true, Transports: []Transport{TCP}})
	if miss := NotListening(second, held); len(miss) != 0 {
		t.Fatalf("second host not listening on %v", miss)
	}
}

func TestOptionsValidation(t *testing.T) {
	k := key(t)
	for name, o := range map[string]Options{
		"no identity":        {Limits: Limits{Conns: 8}},
		"no conns":           {Identity: k},
		"negative conns":     {Identity: k, Limits: Limits{Conns: -1}},
		"unknown transport":  {Identity: k, Limits: Limits{Conns: 8}, Transports: []Transport{"carrier-pigeon"}},
		"empty transports":   {Identity: k, Limits: Limits{Conns: 8}, Transports: []Transport{}},
		"bad listen addr":    {Identity: k, Limits: Limits{Conns: 8}, ListenAddrs: []string{"not-a-multiaddr"}},
		"per peer > total":   {Identity: k, Limits: Limits{Conns: 4, ConnsPerPeer: 5}},
		"streams per peer":   {Identity: k, Limits: Limits{Conns: 8, Streams: 10, StreamsPerPeer: 11}},
		"negative memory":    {Identity: k, Limits: Limits{Conns: 8, Memory: -1}},
		"tiny memory":        {Identity: k, Limits: Limits{Conns: 8, Memory: 1000}},
		"circuits per peer":  {Identity: k, Limits: Limits{Conns: 8, RelayCircuits: 2, RelayCircuitsPerPeer: 3}},
		"relay streams":      {Identity: k, Limits: Limits{Conns: 8, RelayCircuits: 200, RelayCircuitsPerPeer: 200, StreamsPerPeer: 300}},
		"fd over rlimit":     {Identity: k, Limits: Limits{Conns: 8, FD: 1 << 29}},
		"cm low > high":      {Identity: k, Limits: Limits{Conns: 100}, ConnManager: ConnManager{Low: 50, High: 40}},
		"cm high > conns":    {Identity: k, Limits: Limits{Conns: 100}, ConnManager: ConnManager{High: 101}},
		"negative cm grace":  {Identity: k, Limits: Limits{Conns: 100}, ConnManager: ConnManager{Grace: -1}},
		"negative conn rate": {Identity: k, Limits: Limits{Conns: 8, ConnRatePerIP: -1}},
		"negative dial time": {Identity: k, Limits: Limits{Conns: 8}, DialTimeout: -1},
	} {
		if name == "fd over rlimit" && openFileLimit() == 0 {
			continue
		}
		h, err := New(o)
		if err == nil {
			h.Close()
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: %v does not wrap ErrInvalidOptions", name, err)
		}
	}
}

// A relay client listens on /p2p-circuit (the transport adds it when it
// has relays), and that counts as bound.
func TestRelayClientListensOnCircuit(t *testing.T) {
	h := newHost(t, Options{RelayClient: true, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/p2p-circuit"}})
	if miss := NotListening(h, []string{"/ip4/127.0.0.1/tcp/0", "/p2p-circuit"}); len(miss) != 0 {
		t.Fatalf("not listening on %v", miss)
	}
	n := 0
	for _, a := range h.Network().ListenAddresses() {
		if a.String() == "/p2p-circuit" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d /p2p-circuit listeners", n)
	}
	if _, err := New(Options{Identity: key(t), Limits: Limits{Conns: 8}, ListenAddrs: []string{"/p2p-circuit"}}); !errors.Is(err, ErrListen) {
		t.Fatalf("/p2p-circuit without the relay client: %v", err)
	}
}
