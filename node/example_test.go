package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// Two nodes on loopback: one sends a durable message, the other receives it
// and the sender sees the acknowledgement.
func Example() {
	ctx := context.Background()
	dirA, _ := os.MkdirTemp("", "ocapnet-a")
	dirB, _ := os.MkdirTemp("", "ocapnet-b")
	defer os.RemoveAll(dirA)
	defer os.RemoveAll(dirB)
	loopback := transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}}

	got := make(chan node.Message, 1)
	b, err := node.Start(ctx, node.Options{Dir: dirB, Transport: loopback}, node.Handler{
		OnMessage: func(m node.Message) error { got <- m; return nil },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Stop(ctx)

	acked := make(chan node.Acknowledged, 1)
	a, err := node.Start(ctx, node.Options{Dir: dirA, Transport: loopback}, node.Handler{
		OnEvent: func(e node.Event) {
			if ack, ok := e.(node.Acknowledged); ok {
				acked <- ack
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Stop(ctx)

	seq, err := a.Send(ctx, b.PeerID(), "deliver", json.RawMessage(`["notify",[]]`), b.ListenAddrs()[0])
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stored as seq", seq)
	m := <-got
	fmt.Println("received", m.Seq, m.Method, string(m.Params))
	ack := <-acked
	fmt.Println("acknowledged up to", ack.To)
	// Output:
	// stored as seq 1
	// received 1 deliver ["notify",[]]
	// acknowledged up to 1
}
