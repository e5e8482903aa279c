package transport_test

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/transport"
)

// Two transports on loopback: Alice sends Bob a message, using Bob's listen
// address as a hint. Send dials Bob, waits for the channel and writes.
func Example() {
	ctx := context.Background()
	start := func(h transport.Handler) *transport.Transport {
		seed, _ := identity.RandomSeed()
		t, err := transport.Start(ctx, transport.Options{
			KeySeed:       seed,
			IncarnationID: identity.NewIncarnationID(),
			Config:        transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}},
		}, h)
		if err != nil {
			panic(err)
		}
		return t
	}
	got := make(chan string, 1)
	bob := start(transport.Handler{OnMessage: func(from peer.ID, msg []byte) { got <- string(msg) }})
	defer bob.Stop(ctx)
	alice := start(transport.Handler{})
	defer alice.Stop(ctx)

	msg := []byte(`{"seq":1,"method":"deliver","params":["hello"]}`)
	if err := alice.Send(ctx, bob.PeerID(), msg, bob.ListenAddrs()[0]); err != nil {
		panic(err)
	}
	fmt.Println(<-got)
	// Output: {"seq":1,"method":"deliver","params":["hello"]}
}
