package testnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	)
}

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func TestProxyBlackholeHealReset(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 5)
	roundTrip := func(msg string) error {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := roundTrip("hello"); err != nil || string(buf) != "hello" {
		t.Fatalf("forwarding: %q %v", buf, err)
	}
	p.Blackhole()
	err = roundTrip("lost!")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("blackholed round trip: %v, want a timeout (no data, no FIN, no RST)", err)
	}
	p.Heal()
	if err := roundTrip("again"); err != nil || string(buf) != "again" {
		t.Fatalf("after heal: %q %v", buf, err)
	}
	if p.Conns() != 1 {
		t.Errorf("Conns() = %d, want 1", p.Conns())
	}
	p.ResetAll()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(buf)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after ResetAll read: %v, want ECONNRESET", err)
	}
}

func TestRelayUnlimitedCircuitAndRestart(t *testing.T) {
	r := NewRelay(t)
	a, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.SetStreamHandler("/echo", func(s network.Stream) { io.Copy(s, s); s.Close() })

	reserveAndTalk := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := client.Reserve(ctx, b, r.AddrInfo()); err != nil {
			t.Fatalf("reserve: %v", err)
		}
		circuit := ma.StringCast(r.Addr() + "/p2p-circuit")
		a.Peerstore().AddAddrs(b.ID(), []ma.Multiaddr{circuit}, time.Minute)
		s, err := a.NewStream(network.WithAllowLimitedConn(ctx, "test"), b.ID(), "/echo")
		if err != nil {
			t.Fatalf("stream over the circuit: %v", err)
		}
		defer s.Close()
		if s.Conn().Stat().Limited {
			t.Fatal("relayed connection is limited: the relay signalled a limit")
		}
		msg := bytes.Repeat([]byte("x"), 200<<10) // more than go-libp2p's default 128 KiB limit
		go func() { s.Write(msg); s.CloseWrite() }()
		got, err := io.ReadAll(s)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo over the circuit: %d bytes, %v", len(got), err)
		}
	}
	reserveAndTalk()
	r.Stop()
	for _, c := range a.Network().ConnsToPeer(b.ID()) {
		c.Close()
	}
	r.Start()
	reserveAndTalk()
}
