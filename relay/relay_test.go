package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/identity"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

func seed(t *testing.T) identity.Seed {
	s, err := identity.RandomSeed()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A reservation carries no limit (JavaScript kernels refuse limited
// connections), and announced addresses are added.
func TestReservationUnlimitedAndAnnounce(t *testing.T) {
	s, err := Start(Options{KeySeed: seed(t), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		PublicIP: "203.0.113.9", Announce: []string{"/dns4/relay.example.com/tcp/9001/ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	all := strings.Join(s.Addrs(), " ")
	if !strings.Contains(all, "/ip4/203.0.113.9/tcp/") || !strings.Contains(all, "/dns4/relay.example.com/tcp/9001/ws/p2p/"+s.ID().String()) {
		t.Fatalf("addrs %s", all)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.EnableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := peer.AddrInfoFromString(s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	rsvp, err := client.Reserve(ctx, h, *info)
	if err != nil {
		t.Fatal(err)
	}
	if rsvp.LimitDuration != 0 || rsvp.LimitData != 0 {
		t.Fatalf("reservation signals a limit: %v, %d bytes", rsvp.LimitDuration, rsvp.LimitData)
	}
}

func TestIsLoopbackOnly(t *testing.T) {
	for addrs, want := range map[string]bool{
		"/ip4/127.0.0.1/tcp/1":                     true,
		"/ip4/127.0.0.1/tcp/1 /ip6/::1/tcp/2":      true,
		"/ip4/0.0.0.0/tcp/1":                       false,
		"/ip4/127.0.0.1/tcp/1 /ip4/10.0.0.1/tcp/2": false,
		"": false,
	} {
		if got := IsLoopbackOnly(strings.Fields(addrs)); got != want {
			t.Errorf("%q: %v", addrs, got)
		}
	}
}
