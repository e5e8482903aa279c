package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/ocapnet/ocapnet/identity"
)

var benchParams = json.RawMessage(`["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\",1,2,3,4,5,6,7,8,9,10]]","slots":[]},"result":"rp+4"}]`)

// sendAll sends b.N messages from senders goroutines.
func sendAll(b *testing.B, n *Node, to func(i int) (peer.ID, []string), senders int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				pid, hints := to(i)
				if _, err := n.Send(context.Background(), pid, "deliver", benchParams, hints...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkDurableSend: node Sends per second, each durable (fsync'd) when
// it returns, to a peer that is not reachable (so only the log is measured),
// with 1, 64 and 256 concurrent senders, next to raw bbolt appending 64
// records per fsync'd transaction in the same run. With N closed-loop senders
// a commit holds about the N/2 that queued while the previous one ran, so 64
// senders make batches of about 32 and 256 senders batches of 64 and more:
//
//	go test -run '^$' -bench 'DurableSend|RawBoltBatch64' -benchtime 20000x ./node/
func BenchmarkDurableSend(b *testing.B) {
	for _, senders := range []int{1, 64, 256} {
		name := fmt.Sprintf("senders=%d", senders)
		b.Run(name, func(b *testing.B) {
			opts := fastOptions(b.TempDir())
			opts.Window = 1 << 30
			n, err := Start(context.Background(), opts, Handler{})
			if err != nil {
				b.Fatal(err)
			}
			defer n.Stop(context.Background())
			away := identity.Seed{0x77}.PeerID()
			b.ResetTimer()
			sendAll(b, n, func(int) (peer.ID, []string) { return away, nil }, senders)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

// BenchmarkRawBoltBatch64: the durable append rate's ceiling, raw bbolt
// appending 200-byte records, 64 per fsync'd transaction.
func BenchmarkRawBoltBatch64(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	value := make([]byte, 200)
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		if err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("log"))
			if err != nil {
				return err
			}
			for j := i; j < min(i+64, b.N); j++ {
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, uint64(j)), value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkEndToEnd: messages per second delivered between two nodes over
// loopback TCP, from Send on one to the handler on the other, with 64
// concurrent senders (durable sends, acknowledgements, receiver's recorded
// deliveries all included):
//
//	go test -run '^$' -bench EndToEnd -benchtime 20000x ./node/
func BenchmarkEndToEnd(b *testing.B) {
	var got atomic.Int64
	done := make(chan struct{})
	recv, err := Start(context.Background(), fastOptions(b.TempDir()), Handler{OnMessage: func(Message) error {
		if got.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Stop(context.Background())
	opts := fastOptions(b.TempDir())
	opts.Window = 1 << 20
	send, err := Start(context.Background(), opts, Handler{})
	if err != nil {
		b.Fatal(err)
	}
	defer send.Stop(context.Background())
	addr := recv.ListenAddrs()[0]
	b.ResetTimer()
	sendAll(b, send, func(int) (peer.ID, []string) { return recv.PeerID(), []string{addr} }, 64)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("delivered %d of %d", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
